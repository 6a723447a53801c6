# The linalg floor: the f32 GEMM, once per forced ISA path (QK_ISA), like the kernels' forced tests.
add_executable(test_sgemm linalg/test_sgemm.cpp)
target_link_libraries(test_sgemm PRIVATE qk::qk qk_warnings GTest::gtest GTest::gtest_main)
foreach(isa scalar avx2 avxvnni avx512 avx512vnni)
  gtest_add_tests(TARGET test_sgemm SOURCES linalg/test_sgemm.cpp TEST_PREFIX "sgemm_${isa}." TEST_LIST sg)
  set_tests_properties(${sg} PROPERTIES LABELS "unit;isa" ENVIRONMENT "QK_ISA=${isa}"
                       SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
endforeach()
