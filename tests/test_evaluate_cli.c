/* test_evaluate_cli.c: `medselect evaluate` on the real NIH embeddings (../shared): a group's
 * tasks depend on its conditions only (--seen/--unseen/--conditions, any order, first or
 * second group give the same per-task AUROCs), --versus NAME, and --versus best chosen on
 * the validation split: the chosen strategy is the one with the highest validation mean,
 * recomputed here from a plain validation run, and bad uses are one-line usage errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"

/* The lines of a per-task CSV whose first field is `group`, with that field removed,
 * concatenated (malloc'd). */
static char *group_lines(const char *path, const char *group) {
    char *txt = ms_read_file(path, NULL);
    if (!txt) return NULL;
    size_t cap = strlen(txt) + 1, n = 0, gl = strlen(group);
    char *out = malloc(cap);
    out[0] = 0;
    for (char *line = txt; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
        if (!strncmp(line, group, gl) && line[gl] == ',') {
            memcpy(out + n, line + gl + 1, len - gl - 1);
            n += len - gl - 1;
            out[n] = 0;
        }
        line += len;
    }
    free(txt);
    return out;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

int main(void) {
    if (!ms_shared_available()) {
        printf("../shared/data/nih1000 not found: skipped\n");
        return ms_test_summary();
    }
    char E[1024], common[4096], args[16384];
    snprintf(E, sizeof E, "%s", ms_shared("data/nih1000/embeddings"));
    snprintf(common, sizeof common,
             "evaluate --pos-csv %s/test_pos.csv --norm-csv %s/test_norm.csv --pool 30 --query 20 -k 5,10 "
             "--tasks 60 --seed 4 --strategies random,kmeans,kcenter,herding --bootstrap 200",
             E, E);
    char pa[1024], pb[1024], pc[1024];
    snprintf(pa, sizeof pa, "%s", ms_tmp("a.csv"));
    snprintf(pb, sizeof pb, "%s", ms_tmp("b.csv"));
    snprintf(pc, sizeof pc, "%s", ms_tmp("c.csv"));

    /* one condition list, three ways of naming it */
    snprintf(args, sizeof args, "%s --seen Effusion,Infiltration --unseen Cardiomegaly,Atelectasis --per-task %s",
             common, pa);
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0);
    snprintf(args, sizeof args, "%s --conditions atelectasis,Cardiomegaly --per-task %s", common, pb);
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0);
    snprintf(args, sizeof args, "%s --unseen Atelectasis,Cardiomegaly --per-task %s", common, pc);
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0);
    char *a = group_lines(pa, "unseen"), *b = group_lines(pb, "all"), *c = group_lines(pc, "unseen");
    MS_EXPECT(a && b && c && count_lines(a) == 120);
    MS_EXPECT(a && b && !strcmp(a, b));
    MS_EXPECT(a && c && !strcmp(a, c));
    /* and the seen group is not the unseen one */
    char *s = group_lines(pa, "seen");
    MS_EXPECT(s && a && strcmp(s, a) != 0 && count_lines(s) == 120);
    free(a), free(b), free(c), free(s);

    /* --versus NAME */
    char *out = NULL, *err = NULL;
    snprintf(args, sizeof args, "%s --conditions Effusion --versus kcenter", common);
    MS_EXPECT(ms_run_cli(args, &out, &err) == 0);
    MS_EXPECT(out && strstr(out, "vs kcenter [95% CI]") && strstr(out, "| (kcenter) |"));
    free(out), free(err);
    snprintf(args, sizeof args, "%s --conditions Effusion --versus nosuch", common);
    MS_EXPECT(ms_run_cli(args, &out, &err) == 1 && count_lines(err) == 1 && strstr(err, "nosuch"));
    free(out), free(err);
    /* --versus best needs the validation split */
    snprintf(args, sizeof args, "%s --conditions Effusion --versus best", common);
    MS_EXPECT(ms_run_cli(args, &out, &err) == 1 && count_lines(err) == 1 && strstr(err, "--val-pos-csv"));
    free(out), free(err);

    /* --versus best: per K the highest validation mean, recomputed from a validation run */
    char val[4096], pv[1024], js[1024];
    snprintf(pv, sizeof pv, "%s", ms_tmp("val.csv"));
    snprintf(js, sizeof js, "%s", ms_tmp("best.json"));
    snprintf(val, sizeof val, "--val-pos-csv %s/val_pos.csv --val-norm-csv %s/val_norm.csv --val-tasks 80", E, E);
    snprintf(args, sizeof args, "%s --seen Effusion,Infiltration %s --versus best --json %s", common, val, js);
    MS_EXPECT(ms_run_cli(args, &out, &err) == 0);
    snprintf(args, sizeof args,
             "evaluate --pos-csv %s/val_pos.csv --norm-csv %s/val_norm.csv --pool 30 --query 20 -k 5,10 "
             "--tasks 80 --seed 4 --strategies random,kmeans,kcenter,herding --bootstrap 200 "
             "--conditions Effusion,Infiltration --per-task %s",
             E, E, pv);
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0);
    const char *names[4] = {"random", "kmeans", "kcenter", "herding"};
    double sum[2][4] = {{0}};
    char *txt = ms_read_file(pv, NULL);
    MS_EXPECT(txt != NULL);
    int rows = 0;
    for (char *line = txt ? strchr(txt, '\n') + 1 : NULL; line && *line;) {
        char cond[64];
        int task, k;
        double v[4];
        if (sscanf(line, "all,%d,%63[^,],%d,%lf,%lf,%lf,%lf", &task, cond, &k, &v[0], &v[1], &v[2], &v[3]) == 7) {
            for (int j = 0; j < 4; j++) sum[k == 10][j] += v[j];
            rows++;
        }
        char *end = strchr(line, '\n');
        line = end ? end + 1 : NULL;
    }
    MS_EXPECT(rows == 160);
    char want[256];
    int best[2];
    for (int ki = 0; ki < 2; ki++) {
        best[ki] = 0;
        for (int j = 1; j < 4; j++)
            if (sum[ki][j] > sum[ki][best[ki]]) best[ki] = j;
    }
    snprintf(want, sizeof want, "Versus: K 5 %s, K 10 %s.", names[best[0]], names[best[1]]);
    printf("validation means K 5: %.4f %.4f %.4f %.4f; expecting \"%s\"\n", sum[0][0] / 80, sum[0][1] / 80,
           sum[0][2] / 80, sum[0][3] / 80, want);
    MS_EXPECT(out && strstr(out, want));
    MS_EXPECT(out && strstr(out, "Best baseline chosen on the validation split"));
    char *j = ms_read_file(js, NULL);
    MS_EXPECT(j && strstr(j, "\"versus_best\":\ttrue") && strstr(j, "\"p_wilcoxon\""));
    free(j), free(txt), free(out), free(err);

    /* analyze --b best: B is the built-in strategy other than A with the highest mean over
     * every validation task and K, recomputed from a plain validation run */
    const char *all[7] = {"random", "kmedoids", "kmeans", "kcenter", "typiclust", "probcover", "herding"};
    snprintf(args, sizeof args,
             "evaluate --pos-csv %s/val_pos.csv --norm-csv %s/val_norm.csv --pool 30 --query 20 -k 5,10 "
             "--tasks 50 --seed 2 --strategies random,kmedoids,kmeans,kcenter,typiclust,probcover,herding "
             "--bootstrap 200 --conditions Effusion,Infiltration --per-task %s",
             E, E, pv);
    MS_EXPECT(ms_run_cli(args, NULL, NULL) == 0);
    double tot[7] = {0};
    txt = ms_read_file(pv, NULL);
    rows = 0;
    for (char *line = txt ? strchr(txt, '\n') + 1 : NULL; line && *line;) {
        char cond[64];
        int task, k;
        double w[7];
        if (sscanf(line, "all,%d,%63[^,],%d,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &task, cond, &k, &w[0], &w[1], &w[2], &w[3],
                   &w[4], &w[5], &w[6]) == 10) {
            for (int q = 0; q < 7; q++) tot[q] += w[q];
            rows++;
        }
        char *end = strchr(line, '\n');
        line = end ? end + 1 : NULL;
    }
    free(txt);
    MS_EXPECT(rows == 100);
    int bq = -1;
    for (int q = 0; q < 7; q++)
        if (q != 2 && (bq < 0 || tot[q] > tot[bq])) bq = q;
    snprintf(args, sizeof args,
             "analyze --pos-csv %s/test_pos.csv --norm-csv %s/test_norm.csv --pool 30 --query 20 -k 5,10 --tasks 40 "
             "--seed 2 --conditions Infiltration,Effusion --a kmeans --b best --val-pos-csv %s/val_pos.csv "
             "--val-norm-csv %s/val_norm.csv --val-tasks 50 --permutations 50 --bootstrap 200 --out %s",
             E, E, E, E, ms_tmp("analysis"));
    MS_EXPECT(ms_run_cli(args, &out, &err) == 0);
    snprintf(want, sizeof want, "B = %s, the best baseline on the validation split", all[bq]);
    printf("analyze: expecting \"%s\"\n", want);
    MS_EXPECT(err && strstr(err, want));
    free(out), free(err);
    return ms_test_summary();
}
