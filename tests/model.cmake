# The Llama model (include/qk/model): forward pass, perplexity, sampling; qtool eval on models.
qk_add_test(test_model_llama SOURCES model/test_llama.cpp)
if(TARGET qtool)
  qk_add_test(test_eval_cli SOURCES model/test_eval_cli.cpp LABELS cli)
  add_dependencies(test_eval_cli qtool)
endif()
# Whole-model quantization through qtool (the pipeline).
qk_add_test(test_qtool_quantize_model SOURCES model/test_quantize_model.cpp LABELS cli)
if(TARGET qtool)
  add_dependencies(test_qtool_quantize_model qtool)
endif()
qk_add_test(test_qtool_calibrated_quantize SOURCES model/test_calibrated_quantize.cpp LABELS cli)
if(TARGET qtool)
  add_dependencies(test_qtool_calibrated_quantize qtool)
endif()
# Quantized checkpoints (GPTQ, bitsandbytes NF4) as logical weights: the reader and qtool eval/inspect/quantize.
qk_add_test(test_checkpoint_eval SOURCES model/test_checkpoint_eval.cpp LABELS cli)
if(TARGET qtool)
  add_dependencies(test_checkpoint_eval qtool)
endif()
# Text generation (qk/model/generate.hpp) and qtool generate: greedy output equal to llama.cpp's.
qk_add_test(test_model_generate SOURCES model/test_generate.cpp)
if(TARGET qtool)
  qk_add_test(test_generate_cli SOURCES model/test_generate_cli.cpp LABELS cli)
  add_dependencies(test_generate_cli qtool)
endif()
# Text files as model input (qk/model/text.hpp).
qk_add_test(test_model_text SOURCES model/test_text.cpp)
