# dw_add_test(NAME SOURCES src... LABELS l... [ENV k=v...]): one Criterion test executable,
# registered with ctest, linked with the test support library (tests/support, built once in
# tests/CMakeLists.txt). Sanitizer reports fail the test even when the exit status would not.
function(dw_add_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LABELS;ENV" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE dwtestsupport dwcommon PkgConfig::CRITERION)
  target_compile_definitions(${name} PRIVATE
    DW_SOURCE_DIR="${CMAKE_SOURCE_DIR}" DW_BIN_DIR="${CMAKE_BINARY_DIR}/bin")
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name} --jobs=1)
  set_tests_properties(${name} PROPERTIES
    LABELS "${T_LABELS}"
    ENVIRONMENT "${T_ENV}"
    FAIL_REGULAR_EXPRESSION "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer"
    TIMEOUT 300)
endfunction()
