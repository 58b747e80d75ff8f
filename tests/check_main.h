/* Shared main() of the Check unit tests: each test file defines
 * `Suite *test_suite(void)`; check_main.c runs it with TAP output
 * (CK_TAP_LOG_FILE_NAME=-, set by meson) and returns nonzero on failure. */
#ifndef SILA_CHECK_MAIN_H
#define SILA_CHECK_MAIN_H

#include <check.h>

Suite *test_suite(void);

#endif
