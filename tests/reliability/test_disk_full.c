/* Disk full: every writer, run in a child under a small file-size limit (RLIMIT_FSIZE,
 * SIGXFSZ ignored: writes fail with EFBIG as on a full disk), must fail with a status
 * and a one-line message naming the file, leave the previous file at that path
 * byte-identical, and leave no temporary file behind. A control run with room to spare
 * must succeed and replace the file, so the failures are the limit's doing.
 * Writers: nf_checkpoint_save (model), nf_train_state_save (training state), nf_audio_write
 * (WAV, FLAC, AIFF renders), nf_st_write and nf_write_file_atomic (what the rest use). */
#include "nf_audio.h"
#include "nf_checkpoint.h"
#include "nf_rng.h"
#include "nf_safetensors.h"
#include "nf_test.h"
#include "nf_test_model.h"
#include "nf_unet.h"
#include "rel_util.h"

static char dir[NF_PATH_MAX];

typedef struct {
    const char *path;
    nf_unet *net;
    const nf_model_desc *desc;
    nf_train_state *state;
    const nf_audio *audio;
    nf_file_format fmt;
    const void *bytes;
    size_t n;
} job;

static nf_status w_checkpoint(void *a)
{
    job *j = a;
    return nf_checkpoint_save(j->path, j->net, NULL, j->desc, 0);
}
static nf_status w_state(void *a)
{
    job *j = a;
    return nf_train_state_save(j->path, j->state);
}
static nf_status w_audio(void *a)
{
    job *j = a;
    return nf_audio_write(j->path, j->audio, j->fmt, NF_SAMPLE_PCM24, "{\"seed\": 1}");
}
static nf_status w_bytes(void *a)
{
    job *j = a;
    return nf_write_file_atomic(j->path, j->bytes, j->n);
}
static nf_status w_st(void *a)
{
    job *j = a;
    nf_st_tensor t = {"x", NF_DT_F32, 1, {(int64_t)(j->n / 4)}, j->bytes};
    return nf_st_write(j->path, &t, 1, NULL, 0);
}

/* `what`: the previous file is already at j->path. Fail under `limit`, then succeed
 * without it. */
static void check_writer(const char *what, rel_write_fn fn, job *j, rlim_t limit)
{
    void *before = NULL;
    size_t n_before = 0;
    CHECK_OK(nf_read_file(j->path, &before, &n_before));
    char names[4096], msg[2048];
    int entries = rel_list(dir, names, sizeof names);

    int st = rel_run_limited(fn, j, limit, msg, sizeof msg);
    printf("# %s under a %lu-byte limit: status %d: %s\n", what, (unsigned long)limit, st, msg);
    CHECK(st > 0, "%s: the write under a %lu-byte limit returned %d (want an error status)", what,
          (unsigned long)limit, st);
    const char *base = strrchr(j->path, '/') ? strrchr(j->path, '/') + 1 : j->path;
    CHECK(strstr(msg, base) != NULL, "%s: the message does not name the file: '%s'", what, msg);
    CHECK(strchr(msg, '\n') == NULL && msg[0], "%s: the message is not one line: '%s'", what, msg);
    CHECK(rel_same_file(j->path, NULL, before, n_before), "%s: the previous file was changed", what);
    char names_after[4096];
    int after = rel_list(dir, names_after, sizeof names_after);
    CHECK(after == entries, "%s: folder had [%s], now [%s] (a temporary file left?)", what, names, names_after);

    /* Control: with room the same write succeeds and replaces the file. */
    st = rel_run_limited(fn, j, RLIM_INFINITY, msg, sizeof msg);
    CHECK(st == 0, "%s: the write without a limit failed (%d: %s)", what, st, msg);
    CHECK(!rel_same_file(j->path, NULL, before, n_before), "%s: the control write did not replace the file", what);
    after = rel_list(dir, names_after, sizeof names_after);
    CHECK(after == entries, "%s: folder had [%s], after the control [%s]", what, names, names_after);
    free(before);
}

int main(void)
{
    rel_scratch("disk-full", dir, sizeof dir);
    char path[NF_PATH_MAX + 64];
    job j;
    memset(&j, 0, sizeof j);

    /* ---- model checkpoint ---- */
    /* Two tiny networks with different weights (8 kHz mono, 64 samples). */
    nf_test_model_opts o;
    nf_test_model_opts_init(&o);
    nf_model_desc d;
    nf_unet *a, *b;
    o.seed = 1;
    nf_status st = nf_test_model_create(&o, &a, &d);
    o.seed = 2;
    if (!st) st = nf_test_model_create(&o, &b, NULL);
    if (st) {
        fprintf(stderr, "unet: %s\n", nf_last_error());
        return 1;
    }
    snprintf(path, sizeof path, "%s/kit.safetensors", dir);
    CHECK_OK(nf_checkpoint_save(path, a, NULL, &d, 0));
    j.path = path;
    j.net = b;
    j.desc = &d;
    void *tmp;
    size_t ckpt_size;
    CHECK_OK(nf_read_file(path, &tmp, &ckpt_size));
    free(tmp);
    check_writer("checkpoint", w_checkpoint, &j, ckpt_size / 2);
    /* A limit that cuts inside the header, and one a few bytes short of the end. */
    /* The control wrote b's file; start again from a's before each case. */
    CHECK_OK(nf_checkpoint_save(path, a, NULL, &d, 0));
    check_writer("checkpoint (cut in the header)", w_checkpoint, &j, 100);
    CHECK_OK(nf_checkpoint_save(path, a, NULL, &d, 0));
    check_writer("checkpoint (cut at the end)", w_checkpoint, &j, ckpt_size - 3);

    /* ---- training state ---- */
    size_t np = nf_unet_num_params(a);
    float *m = malloc(sizeof(float) * np), *v = malloc(sizeof(float) * np);
    nf_randn(m, np, 5, 0, 0);
    nf_randn(v, np, 6, 0, 0);
    int64_t order[8] = {1, 0, 3, 2, 5, 4, 7, 6};
    nf_train_state s;
    memset(&s, 0, sizeof s);
    s.n_params = np;
    s.params = nf_unet_params(a);
    s.adam_m = m;
    s.adam_v = v;
    s.step = 10;
    s.order = order;
    s.n_order = 8;
    s.loss_scale = 1;
    snprintf(path, sizeof path, "%s/kit.state.safetensors", dir);
    CHECK_OK(nf_train_state_save(path, &s));
    s.step = 20;
    s.params = nf_unet_params(b);
    j.state = &s;
    check_writer("training state", w_state, &j, 4096);

    /* ---- rendered audio: WAV, FLAC, AIFF ---- */
    nf_audio snd;
    CHECK_OK(nf_audio_alloc(&snd, 2, 44100, 44100));
    nf_randn(snd.data, (size_t)2 * 44100, 9, 0, 0);
    for (size_t i = 0; i < (size_t)2 * 44100; i++) snd.data[i] *= 0.1f;
    static const struct {
        const char *name;
        nf_file_format fmt;
    } af[3] = {{"take.wav", NF_FILE_WAV}, {"take.flac", NF_FILE_FLAC}, {"take.aiff", NF_FILE_AIFF}};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, af[k].name);
        CHECK_OK(nf_audio_write(path, &snd, af[k].fmt, NF_SAMPLE_PCM16, NULL));
        j.audio = &snd;
        j.fmt = af[k].fmt;
        char what[64];
        snprintf(what, sizeof what, "audio %s", af[k].name);
        check_writer(what, w_audio, &j, 20000);
    }

    /* ---- generic atomic writes ---- */
    size_t nb = 1 << 16;
    float *bytes = malloc(nb);
    nf_randn(bytes, nb / 4, 11, 0, 0);
    snprintf(path, sizeof path, "%s/blob.bin", dir);
    CHECK_OK(nf_write_file_atomic(path, "old contents", 12));
    j.bytes = bytes;
    j.n = nb;
    check_writer("nf_write_file_atomic", w_bytes, &j, 1000);
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    float one = 1;
    nf_st_tensor t = {"x", NF_DT_F32, 1, {1}, &one};
    CHECK_OK(nf_st_write(path, &t, 1, NULL, 0));
    check_writer("nf_st_write", w_st, &j, 8192);

    free(bytes);
    nf_audio_free(&snd);
    free(m);
    free(v);
    nf_unet_free(a);
    nf_unet_free(b);
    return nf_test_done();
}
