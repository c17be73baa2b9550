/* Interrupted training. A tiny model is trained once without interruption (the
 * reference). Then ten runs are killed with SIGKILL: four the instant a checkpoint's
 * temporary file appears (during a checkpoint write: the 1st, 2nd, 3rd and 4th writes),
 * six at random moments (seeded) of the run. After each kill the newest checkpoint and
 * training state must load, and `noisefloor train --resume` (a fresh start if no state
 * was written yet) must finish the run with exactly the reference's tensors: model
 * weights (EMA and raw) and the whole training state.
 * Then a loss forced to NaN: resuming the finished run for more steps with a learning
 * rate of 1e30 (through nf_train: the CLI caps --lr at 1) must stop with NF_ERR_NUMERIC
 * and leave the model and state files byte-identical. */
#include "nf_audio.h"
#include "nf_checkpoint.h"
#include "nf_safetensors.h"
#include "nf_test.h"
#include "nf_train.h"
#include "rel_util.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>

static char exe[NF_PATH_MAX], work[NF_PATH_MAX], data[NF_PATH_MAX + 16];

static const char *common[] = {"--preset", "tiny", "--rate", "4000", "--length", "0.064", "--steps", "12",
                               "--batch", "4", "--checkpoint-every", "2", "-j", "1", "--seed", "5", "-q", NULL};

static pid_t start_train(const char *out, int resume, const char *log)
{
    char *args[40];
    int n = 0;
    args[n++] = exe;
    args[n++] = "train";
    args[n++] = data;
    args[n++] = "-o";
    args[n++] = (char *)out;
    for (int i = 0; common[i]; i++) args[n++] = (char *)common[i];
    if (resume) args[n++] = "--resume";
    args[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(exe, args);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Every tensor of a and b equal in name, dtype, shape and bytes. */
static int same_tensors(const char *a, const char *b, char *why, size_t wn)
{
    nf_st_file *fa = NULL, *fb = NULL;
    int ok = 0;
    if (nf_st_open(a, &fa) || nf_st_open(b, &fb)) {
        snprintf(why, wn, "%s", nf_last_error());
        goto done;
    }
    if (nf_st_count(fa) != nf_st_count(fb)) {
        snprintf(why, wn, "%d vs %d tensors", nf_st_count(fa), nf_st_count(fb));
        goto done;
    }
    for (int i = 0; i < nf_st_count(fa); i++) {
        const nf_st_info *ta = nf_st_at(fa, i), *tb = nf_st_find(fb, ta->name);
        if (!tb || ta->dtype != tb->dtype || ta->end - ta->begin != tb->end - tb->begin ||
            memcmp(nf_st_data(fa, ta), nf_st_data(fb, tb), ta->end - ta->begin)) {
            snprintf(why, wn, "tensor %s differs", ta->name);
            goto done;
        }
    }
    ok = 1;
done:
    nf_st_close(fa);
    nf_st_close(fb);
    return ok;
}

/* A temporary file of an atomic write in `dir`? */
static int has_tmp(const char *dir)
{
    char names[8192];
    if (rel_list(dir, names, sizeof names) < 0) return 0;
    return strstr(names, ".tmp") != NULL;
}

static void make_data(void)
{
    snprintf(data, sizeof data, "%s/data", work);
    mkdir(data, 0755);
    for (int k = 0; k < 4; k++) {
        nf_audio a;
        nf_audio_alloc(&a, 1, 400, 4000);
        for (int i = 0; i < 400; i++)
            a.data[i] = 0.7f * expf(-i / 130.0f) * sinf(6.2831853f * (200.0f + 50.0f * k) * i / 4000.0f);
        char p[NF_PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/hit%d.wav", data, k);
        CHECK_OK(nf_audio_write(p, &a, NF_FILE_WAV, NF_SAMPLE_PCM16, NULL));
        nf_audio_free(&a);
    }
}

int main(void)
{
    const char *b = getenv("NF_BUILD_ROOT");
    if (!b) {
        fprintf(stderr, "NF_BUILD_ROOT is not set (run through meson test)\n");
        return 1;
    }
    snprintf(exe, sizeof exe, "%s/cli/noisefloor", b);
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "%s: not built (this test needs the CLI's train command)\n", exe);
        return 1;
    }
    rel_scratch("kill-resume", work, sizeof work);
    make_data();

    char ref[NF_PATH_MAX + 32], ref_state[NF_PATH_MAX + 64], log[NF_PATH_MAX + 32];
    snprintf(ref, sizeof ref, "%s/ref/m.safetensors", work);
    snprintf(ref_state, sizeof ref_state, "%s/ref/m.state.safetensors", work);
    snprintf(log, sizeof log, "%s/ref/log", work);
    char refdir[NF_PATH_MAX + 8];
    snprintf(refdir, sizeof refdir, "%s/ref", work);
    mkdir(refdir, 0755);
    double t0 = nf_now();
    int rc = wait_exit(start_train(ref, 0, log));
    double T = nf_now() - t0;
    CHECK(rc == 0, "the reference run failed (exit %d); see %s", rc, log);
    if (rc) return nf_test_done();
    printf("# reference run: %.2f s\n", T);

    unsigned seed = 12345;
    int during_write = 0;
    for (int trial = 0; trial < 10; trial++) {
        char dir[NF_PATH_MAX + 16], out[NF_PATH_MAX + 48], state[NF_PATH_MAX + 64];
        snprintf(dir, sizeof dir, "%s/t%d", work, trial);
        mkdir(dir, 0755);
        snprintf(out, sizeof out, "%s/m.safetensors", dir);
        snprintf(state, sizeof state, "%s/m.state.safetensors", dir);
        snprintf(log, sizeof log, "%s/killed.log", dir);
        double t_start = nf_now(), at = -1;
        pid_t pid = start_train(out, 0, log);
        if (trial < 4) {
            /* The (trial+1)-th appearance of a temporary file: kill in the middle of it. */
            int seen = 0, in_tmp = 0;
            while (nf_now() - t_start < 4 * T + 10) {
                int t = has_tmp(dir);
                if (t && !in_tmp && ++seen == trial + 1) break;
                in_tmp = t;
                usleep(200);
            }
        } else {
            seed = seed * 1103515245u + 12345u;
            at = (double)(seed >> 8 & 0xffff) / 65536.0 * 0.9 * T;
            usleep((useconds_t)(at * 1e6));
        }
        kill(pid, SIGKILL);
        int krc = wait_exit(pid);
        int tmp_left = has_tmp(dir);
        during_write += tmp_left;
        printf("# trial %d: killed after %.3f s (%s)%s\n", trial, nf_now() - t_start,
               at < 0 ? "at a checkpoint write" : "at a random moment",
               krc == 128 + SIGKILL ? (tmp_left ? ", a temporary file left behind" : "") : ", had already exited");

        int have_state = access(state, F_OK) == 0;
        CHECK(!have_state || access(out, F_OK) == 0,
              "trial %d: a training state without a model file (the model's write was killed after the state's)",
              trial);
        if (access(out, F_OK) == 0) {
            nf_unet *net = NULL;
            nf_checkpoint_info info;
            nf_status st = nf_checkpoint_load(out, 1, 256, 0, &net, NULL, &info);
            CHECK(st == NF_OK, "trial %d: the newest checkpoint does not load: %s", trial, nf_last_error());
            nf_unet_free(net);
        }
        if (have_state) {
            nf_train_state s;
            memset(&s, 0, sizeof s);
            nf_status st = nf_train_state_load(state, 0, &s);
            CHECK(st == NF_OK, "trial %d: the newest training state does not load: %s", trial, nf_last_error());
            if (!st) nf_train_state_free(&s);
        }
        snprintf(log, sizeof log, "%s/resume.log", dir);
        rc = wait_exit(start_train(out, have_state, log));
        CHECK(rc == 0, "trial %d: %s failed (exit %d); see %s", trial, have_state ? "--resume" : "the restart", rc,
              log);
        char why[512] = "";
        CHECK(same_tensors(out, ref, why, sizeof why), "trial %d: final model differs from the reference: %s", trial,
              why);
        CHECK(same_tensors(state, ref_state, why, sizeof why),
              "trial %d: final training state differs from the reference: %s", trial, why);
    }
    printf("# %d of 10 kills left a checkpoint write unfinished\n", during_write);
    CHECK(during_write >= 1, "no kill landed during a checkpoint write");

    /* ---- a loss that turns NaN ---- */
    void *m0 = NULL, *s0 = NULL;
    size_t nm0 = 0, ns0 = 0;
    CHECK_OK(nf_read_file(ref, &m0, &nm0));
    CHECK_OK(nf_read_file(ref_state, &s0, &ns0));
    nf_train_config c;
    nf_train_config_default(&c);
    c.data_dir = data;
    c.output = ref;
    c.preset = "tiny";
    c.sample_rate = 4000;
    c.clip_seconds = 0.064;
    c.steps = 40;
    c.batch = 4;
    c.checkpoint_every = 2;
    c.threads = 1;
    c.seed = 5;
    c.resume = 1;
    c.lr = 1e30f;
    nf_status st = nf_train(&c);
    printf("# lr 1e30: status %d: %s\n", st, nf_last_error());
    CHECK(st == NF_ERR_NUMERIC, "a NaN loss: nf_train returned %d (%s), want NF_ERR_NUMERIC", st, nf_last_error());
    CHECK(strstr(nf_last_error(), "m.safetensors") != NULL, "the message does not name the model: %s",
          nf_last_error());
    CHECK(rel_same_file(ref, NULL, m0, nm0), "the last good model file was changed");
    CHECK(rel_same_file(ref_state, NULL, s0, ns0), "the last good training state was changed");
    free(m0);
    free(s0);
    return nf_test_done();
}
