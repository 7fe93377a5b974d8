# libFuzzer targets for the tokenizer (issue 4). Included from CMakeLists.txt
# when DORAC_FUZZ is on; configure with clang, ideally with sanitizers:
#   CC=clang cmake -S . -B build-fuzz-tok -DDORAC_FUZZ=ON -DDORAC_SANITIZE=ON
#   ./build-fuzz-tok/fuzz_tokenizer_encode fuzz/corpus/fuzz_tokenizer_encode -max_total_time=60
#   ./build-fuzz-tok/fuzz_tokenizer_load -dict=fuzz/tokenizer.dict fuzz/corpus/fuzz_tokenizer_load
# fuzz_tokenizer_encode reads the fixture tokenizers from the source tree.
foreach(name fuzz_tokenizer_encode fuzz_tokenizer_load)
  add_executable(${name} ${CMAKE_SOURCE_DIR}/fuzz/${name}.c)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_compile_definitions(${name} PRIVATE DORAC_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  target_compile_options(${name} PRIVATE ${DORAC_WARNINGS})
  target_link_libraries(${name} PRIVATE dorac)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
endforeach()
