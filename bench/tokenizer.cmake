# bench_tokenizer reads the training text from the reference data when configured (-DQK_REFERENCE_DATA) and the
# vocabularies from tests/data/model.
if(TARGET bench_tokenizer)
  set(qk_bench_reference "")
  if(QK_REFERENCE_DATA)
    get_filename_component(qk_bench_reference "${QK_REFERENCE_DATA}" ABSOLUTE BASE_DIR "${PROJECT_SOURCE_DIR}")
  endif()
  target_compile_definitions(bench_tokenizer PRIVATE QK_REFERENCE_DATA="${qk_bench_reference}"
                                                     QK_TEST_DATA="${PROJECT_SOURCE_DIR}/tests/data")
endif()
