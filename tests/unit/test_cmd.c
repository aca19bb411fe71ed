/* Unit tests for the subcommand helpers. */
#include "test.h"

#include "cmd/cmd.h"

#include <errno.h>

TEST(size_suffixes)
{
    unsigned long long v;
    ASSERT_EQ_INT(cmd_parse_size("123", &v), 0);
    ASSERT_EQ_INT(v, 123);
    ASSERT_EQ_INT(cmd_parse_size("64K", &v), 0);
    ASSERT_EQ_INT(v, 65536);
    ASSERT_EQ_INT(cmd_parse_size("512m", &v), 0);
    ASSERT_EQ_INT(v, 512ULL << 20);
    ASSERT_EQ_INT(cmd_parse_size("2G", &v), 0);
    ASSERT_EQ_INT(v, 2ULL << 30);
    ASSERT_EQ_INT(cmd_parse_size("2GiB", &v), 0);
    ASSERT_EQ_INT(v, 2ULL << 30);
    ASSERT_EQ_INT(cmd_parse_size("", &v), -EINVAL);
    ASSERT_EQ_INT(cmd_parse_size("-1", &v), -EINVAL);
    ASSERT_EQ_INT(cmd_parse_size("12Q", &v), -EINVAL);
    ASSERT_EQ_INT(cmd_parse_size("99999999999999999999", &v), -EINVAL);
    ASSERT_EQ_INT(cmd_parse_size("17179869184G", &v), -EINVAL);
}
