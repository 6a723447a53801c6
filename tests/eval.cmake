qk_add_test(test_eval_llama SOURCES eval/test_llama.cpp)
