# Calibration observers (include/qk/calib).
# The reference sets are copied into tests/data/calib, so these run without shared/data.
qk_add_test(test_calib_reference SOURCES calib/test_calib_reference.cpp)
qk_add_test(test_calib_observers SOURCES calib/test_calib_observers.cpp)
if(TARGET qtool)
  qk_add_test(test_calib_cli SOURCES calib/test_cli_calibrate.cpp LABELS cli)
  add_dependencies(test_calib_cli qtool)
endif()
