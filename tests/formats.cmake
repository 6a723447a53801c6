# Encodings (include/qk/formats): ggml blocks (reference vectors in tests/data/ggml, properties, GgmlGrid) and the
# Hugging Face GPTQ checkpoint layout.
qk_add_test(test_formats_ggml SOURCES formats/test_ggml.cpp)
qk_add_test(test_formats_ggml_grid SOURCES formats/test_ggml_grid.cpp)
qk_add_test(test_formats_ggml_search SOURCES formats/test_ggml_search.cpp)
qk_add_test(test_formats_gptq_hf SOURCES formats/test_gptq_hf.cpp)
qk_add_test(test_formats_tensor_values SOURCES formats/test_tensor_values.cpp)
