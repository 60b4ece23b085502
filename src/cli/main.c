/* main.c: `medselect COMMAND [OPTIONS]`: dispatch to the commands and the top-level help. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"demo", ms_cmd_demo, "run the whole method on built-in synthetic data and print the comparison"},
    {"evaluate", ms_cmd_evaluate, "compare selection strategies over meta-test tasks (AUROC, CIs, paired tests)"},
    {"train", ms_cmd_train, "meta-train the MedSelect selector (REINFORCE) and save a checkpoint"},
    {"select", ms_cmd_select, "write a labeling worklist: the K images a selector or strategy chooses"},
    {"embed", ms_cmd_embed, "embed images (PNG/JPEG/DICOM) with a ResNet-18 encoder into the reference layout"},
    {"analyze", ms_cmd_analyze, "compare what two strategies select: clinical features, embedding geometry, report with figures"},
    /* MS_CLI_COMMANDS: further commands are listed here */
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
            "medselect %s: choose which medical images to label when labels are expensive\n"
            "(MedSelect, Smit et al., MIDL 2022).\n\n"
            "Usage: medselect COMMAND [OPTIONS]\n\nCommands:\n",
            MS_VERSION);
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\nRun 'medselect COMMAND --help' for a command's options.\n"
            "Exit codes: 0 success, 1 usage error, 2 bad input data or I/O failure.\n"
            "Environment: MS_PROGRESS=0 hides progress bars, MS_PROGRESS=1 forces them;\n"
            "MS_MAX_ALLOC_MB=N sets the size budget for what input files declare (array shapes,\n"
            "image and network sizes; default 4096): a larger declaration is refused before\n"
            "anything is allocated.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return MS_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return MS_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("medselect %s\n", MS_VERSION);
        return MS_EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    char name[MS_MSG_MAX + 24];
    fprintf(stderr, "medselect: unknown command '%s' (see 'medselect --help')\n", ms_escape_msg(name, sizeof name, argv[1]));
    return MS_EXIT_USAGE;
}

int ms_cli_fail(const char *cmd, ms_status st) {
    fprintf(stderr, "medselect %s: %s\n", cmd, ms_last_error());
    return st == MS_ERR_ARG ? MS_EXIT_USAGE : MS_EXIT_DATA;
}

int ms_cli_usage_error(const char *cmd, const char *fmt, ...) {
    /* formatted, then escaped and shortened like every library message (an option value may
     * hold terminal escapes or be very long) */
    char msg[8192], line[MS_MSG_MAX + 24];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "medselect %s: %s (see 'medselect %s --help')\n", cmd, ms_escape_msg(line, sizeof line, msg), cmd);
    return MS_EXIT_USAGE;
}

int ms_cli_bad_option(const char *cmd, int opt, char **argv) {
    /* getopt's own message is off (opterr = 0): this is the only line printed */
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (opt == ':') return ms_cli_usage_error(cmd, "option '%s' needs a value", arg);
    if (optopt > 0 && optopt < 128 && arg[0] == '-' && arg[1] != '-')
        return ms_cli_usage_error(cmd, "unrecognized option '-%c'", optopt);
    return ms_cli_usage_error(cmd, "unrecognized option '%s'", arg);
}

int ms_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return ms_cli_usage_error(cmd, "%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
    *out = v;
    return 0;
}

int ms_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        return ms_cli_usage_error(cmd, "%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
    *out = v;
    return 0;
}

int ms_cli_int_list(const char *cmd, const char *opt, const char *s, int *out, int max) {
    int n = 0;
    char **v = ms_split_list(s, &n);
    int ok = n > 0 && n <= max;
    for (int i = 0; ok && i < n; i++) {
        long x;
        if (ms_cli_int(cmd, opt, v[i], 1, 1000000, &x)) {
            ms_strv_free(v, n);
            return -1;
        }
        out[i] = (int)x;
    }
    ms_strv_free(v, n);
    if (!ok) {
        ms_cli_usage_error(cmd, "%s: expected 1 to %d comma-separated integers, got '%s'", opt, max, s);
        return -1;
    }
    return n;
}
