/* Temporary directories of the unit tests (see testdir.h). */
#include "testdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

static char tmproot[] = "/tmp/sila-test-XXXXXX";
char tmpdir[sizeof tmproot + 16];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *path)
{
    ck_assert_int_eq(nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static void root_setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(tmproot));
}

static void root_teardown(void)
{
    remove_tree(tmproot);
}

static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof tmproot + 16, "%s/tXXXXXX", tmproot);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    remove_tree(tmpdir);
}

void testdir_add_fixtures(TCase *tc)
{
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
}

const char *tpath(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *p = bufs[next++ % 4];
    snprintf(p, sizeof bufs[0], "%s/%s", tmpdir, name);
    return p;
}
