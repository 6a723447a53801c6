# The examples' experiments: their code linked into tests that assert what their tables must show, and the
# example programs run as a user runs them.
set(QK_QAT_MLP_DIR ${PROJECT_SOURCE_DIR}/examples/qat_mlp)
qk_add_test(test_examples_qat_mlp SOURCES examples/test_qat_mlp.cpp ${QK_QAT_MLP_DIR}/digits.cpp
            ${QK_QAT_MLP_DIR}/mlp.cpp ${QK_QAT_MLP_DIR}/quantized.cpp ${QK_QAT_MLP_DIR}/experiment.cpp LABELS slow)
target_include_directories(test_examples_qat_mlp PRIVATE ${QK_QAT_MLP_DIR})
target_compile_definitions(test_examples_qat_mlp PRIVATE QAT_MLP_DATA="${QK_QAT_MLP_DIR}/digits.npy")
if(QK_BUILD_EXAMPLES)
  qk_add_test(test_examples_cli SOURCES examples/test_cli.cpp LABELS cli)
  target_compile_definitions(test_examples_cli PRIVATE QK_QAT_MLP="$<TARGET_FILE:example_qat_mlp>")
  add_dependencies(test_examples_cli example_qat_mlp)
endif()
