/* test_setattn.c: the setattn selector (src/model/ms_setattn.c): the static scores, the
 * log-probability of an ordered draw and every parameter gradient against PyTorch autograd
 * (tests/fixtures/gen_setattn.py), central finite differences (also for a pool larger than
 * 512 items, which attends to reference items), invariance of the greedy ranking under a
 * random rotation + scaling of the embeddings and under reordering of the pool, prefixes of
 * the ranking, bitwise equality for 1 and 2 threads, checkpoints, and training through the
 * common trainer into a strategy that gives one ranking. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medselect/arch.h"
#include "medselect/checkpoint.h"
#include "medselect/train.h"
#include "model/ms_relational.h"
#include "model/ms_setattn.h"
#include "ms_test.h"

/* fixture tensor names, in the net's tensor order */
static const char *const NAMES[] = {"Win", "bin", "Wq0", "Wk0", "Wv0", "tau0", "Wq1", "Wk1",
                                    "Wv1", "tau1", "W1", "b1", "w2", "a", "b"};
enum { NT = (int)(sizeof NAMES / sizeof NAMES[0]) };

static const char *fx(const char *cs, const char *what) {
    static char buf[8][128];
    static int slot;
    char *b = buf[slot++ % 8];
    snprintf(b, 128, "setattn/%s_%s.npy", cs, what);
    return ms_fixture(b);
}

static void test_layout(void) {
    MS_EXPECT(ms_arch_find("setattn") == &ms_arch_setattn);
    MS_EXPECT(strstr(ms_arch_names(), "setattn") != NULL);
    MS_EXPECT(MS_SA_LAYERS == 2);
    ms_net n;
    MS_EXPECT(ms_net_init(&n, &ms_arch_setattn, 7, 0) == MS_OK);
    int H = 16;
    MS_EXPECT(n.H == H && n.ntensors == NT);
    MS_EXPECT(n.count == (size_t)(H * 5 + H + 2 * (3 * H * H + 1) + H * 2 * H + H + H + 2));
    MS_EXPECT(ms_net_find(&n, "sa.att1.tau") == 9 && ms_net_find(&n, "sa.coverage") == 14);
    ms_net_randomize(&n, 1);
    MS_EXPECT(ms_net_tensor_data(&n, 13)[0] == 8.0f && ms_net_tensor_data(&n, 14)[0] == 1.0f);
    MS_EXPECT(ms_net_tensor_data(&n, 5)[0] == 1.0f && ms_net_tensor_data(&n, 9)[0] == 1.0f);
    int zero = 1;
    for (int i = 0; i < H; i++) zero &= ms_net_tensor_data(&n, 12)[i] == 0.0f;
    MS_EXPECT(zero);
    ms_net_randomize_opts(&n, 1, "redundancy=3,coverage=0.5,tau=2");
    MS_EXPECT(ms_net_tensor_data(&n, 13)[0] == 3.0f && ms_net_tensor_data(&n, 14)[0] == 0.5f &&
              ms_net_tensor_data(&n, 5)[0] == 2.0f);
    ms_net_free(&n);
    const ms_arch *a;
    const char *opts;
    MS_EXPECT(ms_arch_parse_spec("setattn:tau=0.5", &a, &opts) == MS_OK && a == &ms_arch_setattn);
    MS_EXPECT(ms_arch_parse_spec("setattn:heads=2", &a, &opts) == MS_ERR_ARG && strstr(ms_last_error(), "heads"));
    MS_EXPECT(ms_net_init(&n, &ms_arch_setattn, 7, 5000) == MS_ERR_ARG && n.params == NULL);
}

static void load_case(const char *cs, ms_net *net, float **x, int *T, int *D) {
    size_t nw, nx, ns;
    float *Win = ms_load_npy_f32(fx(cs, "Win"), &nw);
    int H = (int)(nw / MS_REL_F);
    free(Win);
    *x = ms_load_npy_f32(fx(cs, "x"), &nx);
    free(ms_load_npy_all(fx(cs, "s"), &ns));
    *T = (int)ns;
    *D = (int)(nx / ns);
    MS_CHECK(ms_net_init(net, &ms_arch_setattn, *D, H) == MS_OK && net->ntensors == NT);
    for (int i = 0; i < NT; i++) {
        size_t n;
        float *v = ms_load_npy_f32(fx(cs, NAMES[i]), &n);
        MS_CHECK(n == net->tensor[i].size);
        memcpy(ms_net_tensor_data(net, i), v, sizeof(float) * n);
        free(v);
    }
}

static void test_pytorch_case(const char *cs) {
    ms_net net;
    float *x;
    int T, D;
    load_case(cs, &net, &x, &T, &D);
    size_t K;
    double *picks_d = ms_load_npy_all(fx(cs, "picks"), &K);
    double *greedy_d = ms_load_npy_all(fx(cs, "greedy"), NULL);
    double *ref_logp = ms_load_npy_all(fx(cs, "logp"), NULL);
    double *ref_s = ms_load_npy_all(fx(cs, "s"), NULL);
    int picks[64], greedy[64];
    for (size_t i = 0; i < K; i++) picks[i] = (int)picks_d[i], greedy[i] = (int)greedy_d[i];
    void *w = net.arch->work_new(&net, 1, T, (int)K);
    double *s = malloc(sizeof(double) * (size_t)T);
    double lp = ms_sa_score_draw(&net, w, x, T, picks, (int)K, s);
    char what[96];
    snprintf(what, sizeof what, "setattn %s static scores vs PyTorch", cs);
    ms_expect_close_d(what, s, ref_s, (size_t)T, 1e-9, 1e-6);
    snprintf(what, sizeof what, "setattn %s log p vs PyTorch", cs);
    ms_expect_close_d(what, &lp, ref_logp, 1, 1e-9, 1e-7);
    float *g = calloc(net.count, sizeof(float));
    double one = 1.0;
    net.arch->backward(&net, w, x, &one, g);
    for (int i = 0; i < NT; i++) {
        char gname[16];
        snprintf(gname, sizeof gname, "g_%s", NAMES[i]);
        size_t n;
        float *ref = ms_load_npy_f32(fx(cs, gname), &n);
        MS_EXPECT(n == net.tensor[i].size);
        snprintf(what, sizeof what, "setattn %s d logp / d %s vs PyTorch", cs, net.tensor[i].name);
        ms_expect_close_f(what, g + net.tensor[i].offset, ref, n, 1e-6, 1e-5);
        free(ref);
    }
    int k = (int)K, got[64], n;
    double logp;
    ms_net_mode gm = {.sampler = MS_SAMPLER_WOR, .greedy = 1};
    net.arch->run(&net, w, x, 1, T, &k, k, gm, NULL, got, &n, &logp, NULL);
    MS_EXPECT(n == k && memcmp(got, greedy, sizeof(int) * K) == 0);
    net.arch->work_free(w);
    free(g), free(s);
    free(picks_d), free(greedy_d), free(ref_logp), free(ref_s), free(x);
    ms_net_free(&net);
}

/* Central differences of log p against backward(), every parameter (or every stride-th). */
static double fd_worst(ms_net *net, const float *x, int T, const int *picks, int K, size_t stride) {
    void *w = net->arch->work_new(net, 1, T, K);
    (void)ms_sa_score_draw(net, w, x, T, picks, K, NULL);
    float *g = calloc(net->count, sizeof(float));
    double one = 1.0;
    net->arch->backward(net, w, x, &one, g);
    double worst = 0;
    for (size_t q = 0; q < net->count; q += stride) {
        float keep = net->params[q];
        float h = 1e-4f * (fabsf(keep) > 1 ? fabsf(keep) : 1.0f);
        net->params[q] = keep + h;
        double hp = (double)net->params[q] - keep;
        double up = ms_sa_score_draw(net, w, x, T, picks, K, NULL);
        net->params[q] = keep - h;
        double hm = keep - (double)net->params[q];
        double dn = ms_sa_score_draw(net, w, x, T, picks, K, NULL);
        net->params[q] = keep;
        double fd = (up - dn) / (hp + hm);
        double err = fabs(fd - g[q]) / (1e-3 + fabs(fd));
        if (err > worst) worst = err;
    }
    net->arch->work_free(w);
    free(g);
    return worst;
}

static void test_finite_differences(void) {
    ms_net net;
    float *x;
    int T, D;
    load_case("s2", &net, &x, &T, &D);
    int picks[8] = {3, 17, 0, 9, 12, 5, 1, 19};
    double worst = fd_worst(&net, x, T, picks, 8, 1);
    if (worst > 3e-4) fprintf(stderr, "setattn finite differences: worst relative error %.3g\n", worst);
    MS_EXPECT(worst <= 3e-4);
    free(x);
    ms_net_free(&net);
    /* a pool of 530 items attends to 512 reference items: keys and values come from those
     * rows only, so their gradient reaches the encoder through the reference rows */
    const int T2 = 530, D2 = 4;
    MS_CHECK(ms_net_init(&net, &ms_arch_setattn, D2, 3) == MS_OK);
    ms_net_randomize(&net, 5);
    for (int i = 0; i < 3; i++) ms_net_tensor_data(&net, 12)[i] = 1.5f - (float)i;
    ms_net_tensor_data(&net, 13)[0] = 1.0f;
    float *y = malloc(sizeof(float) * T2 * D2);
    ms_rng r;
    ms_rng_init(&r, 3, 1, 4);
    for (int i = 0; i < T2 * D2; i++) y[i] = (float)ms_rng_normal(&r) + 0.5f;
    int p2[4] = {7, 520, 1, 300};
    worst = fd_worst(&net, y, T2, p2, 4, 1);
    if (worst > 3e-4) fprintf(stderr, "setattn finite differences (530 items): worst relative error %.3g\n", worst);
    MS_EXPECT(worst <= 3e-4);
    free(y);
    ms_net_free(&net);
}

/* The static scores and the greedy ranking do not change when the embedding space is
 * rotated and scaled; reordering the pool reorders them the same way; the greedy ranking
 * for a smaller K is a prefix of the one for a larger K. */
static void test_invariance(void) {
    ms_net net;
    float *x;
    int T, D;
    load_case("s2", &net, &x, &T, &D);
    int K = 12, n, base[12], got[12], picks[12];
    double logp, s0[20], s1[20];
    void *w = net.arch->work_new(&net, 1, T, K);
    ms_net_mode gm = {.sampler = MS_SAMPLER_WOR, .greedy = 1};
    net.arch->run(&net, w, x, 1, T, &K, K, gm, NULL, base, &n, &logp, NULL);
    (void)ms_sa_score_draw(&net, w, x, T, base, K, s0);
    double sd = 0;
    for (int i = 0; i < T; i++) sd += fabs(s0[i] - s0[0]);
    MS_EXPECT(sd > 1e-2); /* the scores do vary: the ranking is not the coverage terms' alone */
    double *Q = malloc(sizeof(double) * D * D);
    ms_random_orthogonal(Q, D, 11);
    float *y = malloc(sizeof(float) * (size_t)T * D);
    for (int i = 0; i < T; i++)
        for (int c = 0; c < D; c++) {
            double acc = 0;
            for (int k = 0; k < D; k++) acc += Q[c * D + k] * x[i * D + k];
            y[i * D + c] = (float)(0.3 * acc);
        }
    net.arch->run(&net, w, y, 1, T, &K, K, gm, NULL, got, &n, &logp, NULL);
    MS_EXPECT(memcmp(got, base, sizeof base) == 0);
    (void)ms_sa_score_draw(&net, w, y, T, base, K, s1);
    ms_expect_close_d("setattn scores of a rotated, scaled pool", s1, s0, (size_t)T, 1e-5, 1e-5);
    /* a random reordering: perm[i] = the original item now at position i */
    int perm[20], inv[20];
    for (int i = 0; i < T; i++) perm[i] = i;
    ms_rng r;
    ms_rng_init(&r, 17, 2, 0);
    for (int i = T - 1; i > 0; i--) {
        int j = (int)(ms_rng_uniform(&r) * (i + 1));
        if (j > i) j = i;
        int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int i = 0; i < T; i++) inv[perm[i]] = i;
    for (int i = 0; i < T; i++) memcpy(y + (size_t)i * D, x + (size_t)perm[i] * D, sizeof(float) * D);
    net.arch->run(&net, w, y, 1, T, &K, K, gm, NULL, got, &n, &logp, NULL);
    int same = 1;
    for (int i = 0; i < K; i++) same &= got[i] == inv[base[i]];
    MS_EXPECT(same);
    for (int i = 0; i < K; i++) picks[i] = inv[base[i]];
    (void)ms_sa_score_draw(&net, w, y, T, picks, K, s1);
    double worst = 0;
    for (int i = 0; i < T; i++) worst = fmax(worst, fabs(s1[inv[i]] - s0[i]));
    MS_EXPECT(worst < 1e-9);
    /* prefixes */
    for (int k = 1; k < K; k++) {
        net.arch->run(&net, w, x, 1, T, &k, k, gm, NULL, got, &n, &logp, NULL);
        MS_EXPECT(n == k && memcmp(got, base, sizeof(int) * (size_t)k) == 0);
    }
    net.arch->work_free(w);
    free(Q), free(y), free(x);
    ms_net_free(&net);
}

/* Untrained (w2 = 0), the greedy decode is the relational policy's with the same a, b. */
static void test_untrained_is_relational(void) {
    const int T = 40, D = 12;
    ms_net sa, rel;
    MS_CHECK(ms_net_init(&sa, &ms_arch_setattn, D, 0) == MS_OK);
    MS_CHECK(ms_net_init(&rel, &ms_arch_relational, D, 0) == MS_OK);
    ms_net_randomize(&sa, 2);
    ms_net_randomize_opts(&rel, 2, "redundancy=8,coverage=1");
    float *x = malloc(sizeof(float) * T * D);
    ms_rng r;
    ms_rng_init(&r, 8, 8, 8);
    for (int i = 0; i < T * D; i++) x[i] = (float)ms_rng_normal(&r) + 0.7f;
    int k = 20, a[20], b[20], n;
    double lp;
    ms_net_mode gm = {.sampler = MS_SAMPLER_WOR, .greedy = 1};
    void *w1 = sa.arch->work_new(&sa, 1, T, k), *w2 = rel.arch->work_new(&rel, 1, T, k);
    sa.arch->run(&sa, w1, x, 1, T, &k, k, gm, NULL, a, &n, &lp, NULL);
    rel.arch->run(&rel, w2, x, 1, T, &k, k, gm, NULL, b, &n, &lp, NULL);
    MS_EXPECT(memcmp(a, b, sizeof a) == 0);
    sa.arch->work_free(w1), rel.arch->work_free(w2);
    free(x);
    ms_net_free(&sa), ms_net_free(&rel);
}

/* Sampled draws and their gradient: bitwise the same for 1 and 2 threads. */
static void test_threads(void) {
    enum { B = 6, T = 25, D = 12, K = 7 };
    ms_net net;
    MS_CHECK(ms_net_init(&net, &ms_arch_setattn, D, 6) == MS_OK);
    ms_net_randomize(&net, 3);
    for (int i = 0; i < 6; i++) ms_net_tensor_data(&net, 12)[i] = 0.4f * (float)(i % 3) - 0.3f;
    ms_expect_net_thread_independent(&net, B, T, K);
    ms_net_free(&net);
}

static void test_checkpoint(void) {
    ms_net net, back;
    MS_CHECK(ms_net_init(&net, &ms_arch_setattn, 10, 6) == MS_OK);
    ms_net_randomize(&net, 9);
    ms_selector_meta m;
    ms_selector_meta_init(&m);
    m.K = 40;
    const char *path = ms_tmp("setattn.safetensors");
    MS_EXPECT(ms_net_save(path, &net, &m) == MS_OK);
    ms_selector_meta r;
    MS_EXPECT(ms_net_load(path, &back, &r) == MS_OK);
    MS_EXPECT(back.arch == &ms_arch_setattn && back.D == 10 && back.H == 6 && r.K == 40);
    MS_EXPECT(back.params && memcmp(back.params, net.params, sizeof(float) * net.count) == 0);
    ms_net_free(&back);
    ms_selector_meta_free(&r);
    ms_selector_meta_free(&m);
    ms_lstm_params p;
    MS_EXPECT(ms_checkpoint_load(path, &p, NULL) == MS_ERR_DATA && strstr(ms_last_error(), "setattn"));
    ms_net_free(&net);
}

/* The common trainer runs setattn; its checkpoint works as a strategy giving rankings. */
static void test_training(void) {
    ms_split tr, va;
    ms_test_small_splits(&tr, &va);
    int cond[2] = {0, 1};
    ms_train_config c;
    ms_train_defaults(&c);
    c.arch = &ms_arch_setattn;
    c.hidden = 6;
    c.shape = (ms_task_shape){.pool = 30, .pos_frac = 0.2, .query = 20, .query_pos_frac = 0.5};
    c.pos_frac_hi = 0.5;
    c.k_min = 3;
    c.k = 12;
    c.batch = 8;
    c.tasks = 32;
    c.epochs = 2;
    c.val_tasks = 16;
    c.val_every = 4;
    c.lr = 1e-2;
    c.seed = 4;
    c.train_cond = cond, c.n_train_cond = 2;
    c.val_cond = cond, c.n_val_cond = 2;
    c.out_dir = ms_tmp("sa_run");
    ms_train_summary s;
    ms_status st = ms_train(&tr, &va, &c, &s);
    if (st) fprintf(stderr, "setattn training: %s\n", ms_last_error());
    MS_EXPECT(st == MS_OK && s.iterations == 8);
    char path[4096];
    snprintf(path, sizeof path, "%s/last.safetensors", c.out_dir);
    ms_selector sel;
    memset(&sel, 0, sizeof sel);
    MS_EXPECT(ms_net_load(path, &sel.net, NULL) == MS_OK);
    MS_EXPECT(sel.net.arch == &ms_arch_setattn);
    int moved = 0;
    for (int i = 0; i < sel.net.H; i++) moved |= ms_net_tensor_data(&sel.net, 12)[i] != 0.0f;
    MS_EXPECT(moved); /* training changed the head */
    ms_strategy *strat = ms_selector_strategy(&sel);
    MS_EXPECT(strat->ranking && strcmp(strat->label, "medselect setattn") == 0);
    float *unit = malloc(sizeof(float) * 30 * 16);
    ms_rows_unit(unit, tr.emb, 30, 16);
    ms_pool pool = {.n = 30, .d = 16, .x = unit, .raw = tr.emb, .clin = NULL};
    ms_arena ws;
    ms_arena_init(&ws);
    int a[12], b[5];
    MS_EXPECT(strat->select(strat, &pool, 12, 0, a, &ws) == MS_OK);
    ms_arena_reset(&ws);
    MS_EXPECT(strat->select(strat, &pool, 5, 0, b, &ws) == MS_OK);
    MS_EXPECT(memcmp(a, b, sizeof b) == 0);
    ms_arena_free(&ws);
    ms_strategy_free(strat);
    free(unit);
    ms_split_free(&tr);
    ms_split_free(&va);
}

int main(void) {
    test_layout();
    test_pytorch_case("s1");
    test_pytorch_case("s2");
    test_finite_differences();
    test_invariance();
    test_untrained_is_relational();
    test_threads();
    test_checkpoint();
    test_training();
    return ms_test_summary();
}
