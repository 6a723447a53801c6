# Reliability (docs/reliability.md): what qtool may touch on disk, non-finite values, messages and exit codes,
# signals, determinism across thread counts. Every test makes its own tiny model files.
foreach(t outputs nonfinite messages determinism)
  qk_add_test(test_reliability_${t} SOURCES reliability/test_${t}.cpp LABELS cli)
  if(TARGET qtool)
    add_dependencies(test_reliability_${t} qtool)
  endif()
endforeach()
qk_add_test(test_reliability_library SOURCES reliability/test_library.cpp)
