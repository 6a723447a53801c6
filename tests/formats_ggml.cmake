# ggml block encodings (include/qk/formats/ggml.hpp): reference vectors in tests/data/ggml, properties, GgmlGrid.
qk_add_test(test_formats_ggml SOURCES formats/test_ggml.cpp)
qk_add_test(test_formats_ggml_grid SOURCES formats/test_ggml_grid.cpp)
qk_add_test(test_formats_ggml_search SOURCES formats/test_ggml_search.cpp)
