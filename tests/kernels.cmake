# Kernels. test_kernels_isa runs every path the CPU supports in one process (parameterized over the paths,
# skipping the ones the CPU lacks with the reason); test_kernels_forced is registered once per path with
# QK_ISA=<path> in the environment (test names isa_<path>.*), so the dispatcher's override and the default
# entry points run for every path. Both carry the labels unit and isa.
#
# These two are registered with gtest_add_tests (at configure time) rather than qk_add_test: a LABELS list
# passed through gtest_discover_tests' PROPERTIES is split into separate property words (CMake 3.25), so
# "unit;isa" would end up as LABELS=unit plus a bogus property.
qk_add_test(test_kernels_api SOURCES kernels/test_kernels_api.cpp)
if(TARGET qtool)
  qk_add_test(test_kernels_cli SOURCES kernels/test_bench_cli.cpp LABELS cli)
  add_dependencies(test_kernels_cli qtool)
endif()

function(qk_kernels_test_exe name src)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE qk::qk qk_warnings GTest::gtest GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_definitions(${name} PRIVATE QK_TEST_DATA="${CMAKE_CURRENT_SOURCE_DIR}/data"
                             QK_REFERENCE_DATA="${QK_REFERENCE_DATA_ABS}")
endfunction()

qk_kernels_test_exe(test_kernels_isa kernels/test_gemm_isa.cpp)
gtest_add_tests(TARGET test_kernels_isa SOURCES kernels/test_gemm_isa.cpp TEST_PREFIX "kernel_paths." TEST_LIST isa_all)
set_tests_properties(${isa_all} PROPERTIES LABELS "unit;isa")

qk_kernels_test_exe(test_kernels_forced kernels/test_gemm_forced.cpp)
foreach(isa scalar avx2 avxvnni avx512 avx512vnni)
  gtest_add_tests(TARGET test_kernels_forced SOURCES kernels/test_gemm_forced.cpp TEST_PREFIX "isa_${isa}."
                  TEST_LIST forced)
  set_tests_properties(${forced} PROPERTIES LABELS "unit;isa" ENVIRONMENT "QK_ISA=${isa}"
                       SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
endforeach()

# The ggml block products (qk/kernels/ggml_dot.hpp): their definition (unit), every path against the oracle in one
# process (ggml_dot_paths.*), and the default entry points under QK_ISA=<path> (ggml_isa_<path>.*).
qk_add_test(test_ggml_dot SOURCES kernels/test_ggml_dot.cpp)

qk_kernels_test_exe(test_ggml_dot_isa kernels/test_ggml_dot_isa.cpp)
gtest_add_tests(TARGET test_ggml_dot_isa SOURCES kernels/test_ggml_dot_isa.cpp TEST_PREFIX "ggml_dot_paths."
                TEST_LIST ggml_all)
set_tests_properties(${ggml_all} PROPERTIES LABELS "unit;isa")

qk_kernels_test_exe(test_ggml_dot_forced kernels/test_ggml_dot_forced.cpp)
foreach(isa scalar avx2 avxvnni avx512 avx512vnni)
  gtest_add_tests(TARGET test_ggml_dot_forced SOURCES kernels/test_ggml_dot_forced.cpp TEST_PREFIX "ggml_isa_${isa}."
                  TEST_LIST ggml_forced)
  set_tests_properties(${ggml_forced} PROPERTIES LABELS "unit;isa" ENVIRONMENT "QK_ISA=${isa}"
                       SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
endforeach()
