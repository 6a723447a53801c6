# Methods (GPTQ, AWQ, SmoothQuant, LLM.int8(), RTN, Hessian): tests on the reference problems of tests/data/methods.
qk_add_test(test_methods_gptq SOURCES methods/test_gptq.cpp)
qk_add_test(test_methods_awq SOURCES methods/test_awq.cpp)
qk_add_test(test_methods_smoothquant SOURCES methods/test_smoothquant.cpp)
if(TARGET qtool)
  qk_add_test(test_methods_cli SOURCES methods/test_cli.cpp LABELS cli)
  add_dependencies(test_methods_cli qtool)
endif()
qk_add_test(test_methods_grids SOURCES methods/test_grids.cpp)
