# The runtime floor (include/qk/runtime): quantized inference on qk's kernels.
qk_add_test(test_runtime_engine SOURCES runtime/test_engine.cpp)
if(TARGET qtool)
  qk_add_test(test_run_cli SOURCES runtime/test_run_cli.cpp LABELS cli)
  add_dependencies(test_run_cli qtool)
endif()
