/* cli.h: the medselect command-line tool. One file per command (cmd_<name>.c), each
 * exporting `int ms_cmd_<name>(int argc, char **argv)` (argv[0] is the command name) and
 * listed in main.c's table. Commands print results to stdout or files, progress to stderr,
 * and return the exit code: 0 success, 1 usage error, 2 bad input data or I/O failure. */
#ifndef MS_CLI_H
#define MS_CLI_H

#include "medselect/common.h"

enum { MS_EXIT_OK = 0, MS_EXIT_USAGE = 1, MS_EXIT_DATA = 2 };

int ms_cmd_evaluate(int argc, char **argv);
int ms_cmd_demo(int argc, char **argv);
int ms_cmd_train(int argc, char **argv);
int ms_cmd_select(int argc, char **argv);
int ms_cmd_embed(int argc, char **argv);
int ms_cmd_analyze(int argc, char **argv);
int ms_cmd_bench(int argc, char **argv);

/* Prints "medselect CMD: <ms_last_error()>" on stderr and returns MS_EXIT_DATA (or
 * MS_EXIT_USAGE for MS_ERR_ARG). */
int ms_cli_fail(const char *cmd, ms_status st);
/* Prints "medselect CMD: <message>" and "Try 'medselect CMD --help'." and returns 1. */
int ms_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict number parsing for options; on error prints a usage error and returns non-zero. */
int ms_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int ms_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
/* "10,20,40" -> ints (at most max); returns count or -1 after a usage error. */
int ms_cli_int_list(const char *cmd, const char *opt, const char *s, int *out, int max);

#endif
