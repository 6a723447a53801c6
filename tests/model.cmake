# Whole-model files: the Hugging Face GPTQ checkpoint layout and `qtool quantize` in model mode.
qk_add_test(test_formats_gptq_hf SOURCES model/test_gptq_hf.cpp)
qk_add_test(test_qtool_quantize_model SOURCES model/test_quantize_model.cpp LABELS cli)
if(TARGET qtool)
  add_dependencies(test_qtool_quantize_model qtool)
endif()
