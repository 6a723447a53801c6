# Whole-model files: the Hugging Face GPTQ checkpoint layout and `qtool quantize` in model mode.
qk_add_test(test_formats_gptq_hf SOURCES model/test_gptq_hf.cpp)
