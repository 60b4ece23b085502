/* cli.h: the medselect command-line tool. One file per command (cmd_<name>.c), each
 * exporting `int ms_cmd_<name>(int argc, char **argv)` (argv[0] is the command name) and
 * listed in main.c's table. Commands print results to stdout or files, progress to stderr,
 * and return the exit code: 0 success, 1 usage error, 2 bad input data or I/O failure. */
#ifndef MS_CLI_H
#define MS_CLI_H

#include "medselect/common.h"
#include "medselect/gemm.h"

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
/* Prints the one line "medselect CMD: <message> (see 'medselect CMD --help')" and returns 1. */
int ms_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The usage error for getopt_long's '?' or ':' (call with opterr = 0 and an optstring that
 * starts with ':'): one line naming the unrecognized option or the option missing its value.
 * Returns 1. */
int ms_cli_bad_option(const char *cmd, int opt, char **argv);

/* Strict number parsing for options; on error prints a usage error and returns non-zero. */
int ms_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int ms_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
/* "10,20,40" -> ints (at most max); returns count or -1 after a usage error. */
int ms_cli_int_list(const char *cmd, const char *opt, const char *s, int *out, int max);

#endif

/* ---- options shared by evaluate, train, analyze and demo -------------------------------- */
#include "medselect/evaluate.h"

/* getopt_long ids of the shared options (single letters use their character) */
enum {
    MS_OPT_POS_CSV = 1000, MS_OPT_NORM_CSV, MS_OPT_POS_EMB, MS_OPT_NORM_EMB, MS_OPT_UNCERTAIN,
    MS_OPT_CONDITIONS, MS_OPT_SEEN, MS_OPT_UNSEEN, MS_OPT_POOL, MS_OPT_POS_FRAC, MS_OPT_QUERY,
    MS_OPT_QUERY_POS_FRAC, MS_OPT_TASKS, MS_OPT_SEED, MS_OPT_THREADS, MS_OPT_PREDICTOR,
    MS_OPT_JSON, MS_OPT_STRATEGIES, MS_OPT_BOOTSTRAP, MS_OPT_MODEL,
    MS_OPT_VAL_POS_CSV, MS_OPT_VAL_NORM_CSV, MS_OPT_VAL_POS_EMB, MS_OPT_VAL_NORM_EMB, MS_OPT_VAL_TASKS,
    MS_OPT_CLINICAL, MS_OPT_DECODE, MS_OPT_GROUP_BY, MS_OPT_PRECISION,
    MS_OPT_FIRST_FREE = 1100
};

/* The long options above, for inclusion in a command's option table. */
#define MS_CLI_DATA_OPTIONS                                                                   \
    {"pos-csv", required_argument, 0, MS_OPT_POS_CSV},                                        \
    {"norm-csv", required_argument, 0, MS_OPT_NORM_CSV},                                      \
    {"pos-emb", required_argument, 0, MS_OPT_POS_EMB},                                        \
    {"norm-emb", required_argument, 0, MS_OPT_NORM_EMB},                                      \
    {"uncertain", required_argument, 0, MS_OPT_UNCERTAIN}
#define MS_CLI_TASK_OPTIONS                                                                   \
    {"conditions", required_argument, 0, MS_OPT_CONDITIONS},                                  \
    {"seen", required_argument, 0, MS_OPT_SEEN},                                              \
    {"unseen", required_argument, 0, MS_OPT_UNSEEN},                                          \
    {"pool", required_argument, 0, MS_OPT_POOL},                                              \
    {"pos-frac", required_argument, 0, MS_OPT_POS_FRAC},                                      \
    {"query", required_argument, 0, MS_OPT_QUERY},                                            \
    {"query-pos-frac", required_argument, 0, MS_OPT_QUERY_POS_FRAC},                          \
    {"tasks", required_argument, 0, MS_OPT_TASKS},                                            \
    {"seed", required_argument, 0, MS_OPT_SEED},                                              \
    {"threads", required_argument, 0, MS_OPT_THREADS},                                        \
    {"predictor", required_argument, 0, MS_OPT_PREDICTOR},                                    \
    {"precision", required_argument, 0, MS_OPT_PRECISION},                                    \
    {"group-by", required_argument, 0, MS_OPT_GROUP_BY},                                      \
    {"k", required_argument, 0, 'k'}

typedef struct {
    const char *pos_csv, *norm_csv, *pos_emb, *norm_emb;
    ms_uncertain uncertain;
    const char *conditions, *seen, *unseen;
    ms_task_shape shape;
    int n_k;
    int k[MS_MAX_K];
    long tasks;
    uint64_t seed;
    int threads;
    ms_pred_kind pred;
    const char *group_by; /* --group-by COLUMN: pools without repeated groups, or NULL */
} ms_cli_common;

/* Defaults of the reference code: pool 1000 (half positive), query 100 (half positive),
 * K 20, 1000 tasks, seed 0, all cores, cosine predictor, uncertain as positive. */
void ms_cli_common_defaults(ms_cli_common *c);
/* Handles one shared option. Returns 0 when handled, -1 when `opt` is not a shared option,
 * or a positive exit code after printing a usage error. */
int ms_cli_common_option(const char *cmd, int opt, const char *arg, ms_cli_common *c);
/* The help text of the shared options. */
extern const char ms_cli_data_help[];
extern const char ms_cli_task_help[];
/* The --precision help line, and its handler: parses f32|bf16, checks the CPU and sets the
 * process-wide precision (gemm.h). Returns 0 or the usage exit code after the message. */
extern const char ms_cli_precision_help[];
int ms_cli_precision(const char *cmd, const char *arg);
/* Loads the split named by the options (both CSVs required). Returns an exit code. */
int ms_cli_load_split(const char *cmd, const ms_cli_common *c, ms_split *s);
/* Builds the evaluation config: groups from --conditions ("all"), or --seen/--unseen (each
 * given list becomes a group), or the paper's seen/unseen sets. Group condition arrays are
 * allocated (free with ms_cli_config_free). Returns an exit code. */
int ms_cli_eval_config(const char *cmd, const ms_cli_common *c, const ms_split *s, ms_eval_config *cfg);
void ms_cli_config_free(ms_eval_config *cfg);

/* The validation split used to choose "the best baseline" (evaluate --versus best, analyze
 * --b best) without looking at the test tasks. */
typedef struct {
    const char *pos_csv, *norm_csv, *pos_emb, *norm_emb;
    long tasks; /* 0: as many as the evaluation */
} ms_cli_val;
#define MS_CLI_VAL_OPTIONS                                                                    \
    {"val-pos-csv", required_argument, 0, MS_OPT_VAL_POS_CSV},                                \
    {"val-norm-csv", required_argument, 0, MS_OPT_VAL_NORM_CSV},                              \
    {"val-pos-emb", required_argument, 0, MS_OPT_VAL_POS_EMB},                                \
    {"val-norm-emb", required_argument, 0, MS_OPT_VAL_NORM_EMB},                              \
    {"val-tasks", required_argument, 0, MS_OPT_VAL_TASKS}
extern const char ms_cli_val_help[];
/* Like ms_cli_common_option for the validation options. */
int ms_cli_val_option(const char *cmd, int opt, const char *arg, ms_cli_val *v);
/* Loads the validation split named by v (with c's --uncertain and --group-by); the choice
 * itself is the library's (evaluate.h: ms_eval_versus_best, analyze.h: ms_analyze_choose_b).
 * A usage error when --val-pos-csv or --val-norm-csv is missing. On success the caller frees
 * val (ms_split_free). Returns an exit code. */
int ms_cli_val_load(const char *cmd, const ms_cli_val *v, const ms_cli_common *c, ms_split *val);
/* Creates "random" followed by the strategies of the comma-separated list (a repeated
 * "random" is skipped), with `extra` more free slots at the end for the caller. *out is
 * allocated (free each with ms_strategy_free, then the array). Returns an exit code. */
int ms_cli_strategies(const char *cmd, const char *list, int extra, ms_strategy ***out, int *n);
/* Loads a trained selector checkpoint as a strategy named "medselect" decoding with
 * `decode`, checking that its input dimension matches the split (D, or D + 3 with clinical
 * features: from the checkpoint's metadata, inferred for a tensors-only file, or forced by
 * force_clinical, i.e. --clinical). Returns an exit code. */
int ms_cli_model_strategy(const char *cmd, const char *path, const ms_split *s, int force_clinical,
                          ms_decode decode, ms_strategy **out);
/* Help lines of --clinical and --decode (evaluate, analyze). */
extern const char ms_cli_model_help[];
/* Meta-trains the demo's small selector (hidden 64) on the seen group of cfg using train and
 * val, with the demo's task shape, and returns it as a strategy. Returns an exit code. */
int ms_cli_demo_train(const char *cmd, const ms_split *train, const ms_split *val,
                      const ms_eval_config *cfg, uint64_t seed, ms_strategy **out);
