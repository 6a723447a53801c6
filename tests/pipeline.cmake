# The pipeline (include/qk/pipeline) through its API: plans, quantize_model, sinks, calibration.
qk_add_test(test_pipeline_plan SOURCES pipeline/test_plan.cpp)
qk_add_test(test_pipeline_quantize SOURCES pipeline/test_quantize_api.cpp)
if(TARGET qtool)
  add_dependencies(test_pipeline_quantize qtool)
endif()
