/* Temporary directories of the unit tests. testdir_add_fixtures adds to a
 * test case an unchecked fixture (run by the parent process) that makes one
 * root directory per run and removes it whole, so nothing is left behind
 * even when a forked test dies, and a checked fixture that gives each test
 * its own empty subdirectory, `tmpdir`. */
#ifndef SILA_TESTDIR_H
#define SILA_TESTDIR_H

#include <check.h>

/* The current test's directory (valid inside a test). */
extern char tmpdir[];

void testdir_add_fixtures(TCase *tc);

/* Path of `name` in tmpdir, in one of four rotating static buffers: valid
 * until the fourth call after; copy a path kept longer. */
const char *tpath(const char *name);

#endif
