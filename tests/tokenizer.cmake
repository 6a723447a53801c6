# Text and llama2.c input: the SentencePiece tokenizer (qk/model/tokenizer.hpp), llama2.c checkpoints
# (qk/io/llama2c.hpp), llama2.c -> GGUF conversion (qk/model/convert.hpp) and qtool tokenize / convert.
qk_add_test(test_model_tokenizer SOURCES model/test_tokenizer.cpp)
qk_add_test(test_model_tokenizer_gguf SOURCES model/test_tokenizer_gguf.cpp)
qk_add_test(test_io_llama2c SOURCES io/test_llama2c.cpp)
qk_add_test(test_model_convert SOURCES model/test_convert.cpp)
if(TARGET qtool)
  qk_add_test(test_model_text_cli SOURCES model/test_tokenize_cli.cpp LABELS cli)
  add_dependencies(test_model_text_cli qtool)
endif()
