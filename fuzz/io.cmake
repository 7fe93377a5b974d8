# libFuzzer targets for the io/ parsers (safetensors header, config.json,
# adapter_config.json). Included from CMakeLists.txt when DORAC_FUZZ is on;
# configure with CC=clang, ideally with -DDORAC_SANITIZE=ON as well:
#   CC=clang cmake -S . -B build-fuzz -DDORAC_FUZZ=ON -DDORAC_SANITIZE=ON
#   ./build-fuzz/fuzz_safetensors fuzz/corpus/safetensors -max_total_time=60
foreach(name fuzz_safetensors fuzz_hf_config fuzz_peft_config)
  add_executable(${name} ${CMAKE_SOURCE_DIR}/fuzz/${name}.c)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${DORAC_WARNINGS})
  target_link_libraries(${name} PRIVATE dorac)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
endforeach()
