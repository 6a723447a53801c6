# qk_isa_unit(<name> <flags>): compiles ${CMAKE_CURRENT_SOURCE_DIR}/<name>.cpp with its own ISA flags into an
# OBJECT library whose objects are folded into qk. Only the run-time dispatch (qk/util/isa.hpp) decides which of
# them may run. Used by src/kernels and src/linalg.
function(qk_isa_unit name flags)
  set(src ${CMAKE_CURRENT_SOURCE_DIR}/${name}.cpp)
  if(NOT EXISTS ${src})
    return()
  endif()
  get_filename_component(floor ${CMAKE_CURRENT_SOURCE_DIR} NAME)
  set(target qk_${floor}_${name})
  add_library(${target} OBJECT ${src})
  # No contraction of a*b+c into FMA behind our back: the f32 epilogues must round the same way on every path.
  target_compile_options(${target} PRIVATE ${flags} -ffp-contract=off)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src
                             ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${target} PRIVATE Eigen3::Eigen fmt::fmt OpenMP::OpenMP_CXX qk_warnings)
  target_compile_features(${target} PRIVATE cxx_std_20)
  target_sources(qk PRIVATE $<TARGET_OBJECTS:${target}>)
endfunction()
