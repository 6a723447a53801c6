qk_add_test(test_eval_llama SOURCES eval/test_llama.cpp)
qk_add_test(test_eval_cli SOURCES eval/test_eval_cli.cpp LABELS cli)
