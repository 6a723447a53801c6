# The runtime floor (include/qk/runtime): quantized inference on qk's kernels.
qk_add_test(test_runtime_engine SOURCES runtime/test_engine.cpp)
