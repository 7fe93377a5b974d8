# libFuzzer targets for the training inputs: a line of JSONL data (with a
# tokenizer) and metrics.jsonl. Included when DORAC_FUZZ is on; run from the
# repository root (the data target loads a fixture tokenizer):
#   ./build-fuzz/fuzz_data_line fuzz/corpus/data_line -max_total_time=60
foreach(name fuzz_data_line fuzz_metrics)
  add_executable(${name} ${CMAKE_SOURCE_DIR}/fuzz/${name}.c)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${DORAC_WARNINGS})
  target_link_libraries(${name} PRIVATE dorac)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
endforeach()
