/* nf_lv2host: a small deterministic LV2 host for noisefloor.lv2 (liblilv + libsndfile).
 *
 * Host side of ../shared/PLUGIN-TESTING.md: urid map/unmap, log:log, options (block
 * lengths, sample rate), bufsz:boundedBlockLength and a *synchronous* worker: the
 * plugin's work() runs inside schedule_work(), responses are queued and delivered to
 * work_response() after run(), then end_run(). So a render is a pure function of the
 * inputs, which the tests below rely on.
 *
 * malloc/calloc/realloc/free (and the aligned variants) are interposed (the program is
 * linked with -rdynamic) and counted while a thread-local flag is set around run() and
 * work_response(); the flag is cleared inside work(), which may allocate.
 *
 *   nf_lv2host test <case> <scratch-dir>      one test case (see main())
 *   nf_lv2host render <model> <out.wav> [rate] a short pattern to a WAV, peak/RMS printed
 *   nf_lv2host bench [model]                   run() cost and load-to-first-take time
 *   nf_lv2host savestate <model> <dir>         a saved state with rendered takes
 *   nf_lv2host wavstats <file> [min-peak]      peak/RMS; fails if silent or not finite
 *
 * The model files the tests use are small untrained checkpoints written by
 * make_test_model (NF_PLUGIN_MODEL_MAKER), loaded by the real engine inside the plugin. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lilv/lilv.h>
#include <sndfile.h>

#include <lv2/atom/atom.h>
#include <lv2/atom/forge.h>
#include <lv2/atom/util.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/log/log.h>
#include <lv2/midi/midi.h>
#include <lv2/options/options.h>
#include <lv2/parameters/parameters.h>
#include <lv2/patch/patch.h>
#include <lv2/presets/presets.h>
#include <lv2/state/state.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>

#include <time.h>

#include "nf_test.h"

/* The host does not link the library: the plugin carries its own copy, and an exported
 * copy in the host (-rdynamic) would interpose on it. */
#define NF_PATH_MAX 4096
static double nf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define NF_URI "https://noisefloor.dev/lv2/noisefloor"

/* ------------------------------------------------------------ malloc counting */

static __thread int count_heap;
static long heap_calls;

#if defined(__SANITIZE_ADDRESS__)
/* Under AddressSanitizer the allocator is ASan's: count through its hooks instead. */
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
                                              void (*f)(const volatile void *));
static void on_malloc(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    if (count_heap) heap_calls++;
}
static void on_free(const volatile void *p)
{
    if (count_heap && p) heap_calls++;
}
static void heap_counting_init(void)
{
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}
#else
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static void heap_counting_init(void) {}

void *malloc(size_t n)
{
    if (count_heap) heap_calls++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    if (count_heap) heap_calls++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    if (count_heap) heap_calls++;
    return __libc_realloc(p, n);
}
void free(void *p)
{
    if (count_heap && p) heap_calls++;
    __libc_free(p);
}
void *memalign(size_t al, size_t n)
{
    if (count_heap) heap_calls++;
    return __libc_memalign(al, n);
}
void *aligned_alloc(size_t al, size_t n)
{
    if (count_heap) heap_calls++;
    return __libc_memalign(al, n);
}
int posix_memalign(void **out, size_t al, size_t n)
{
    if (count_heap) heap_calls++;
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
#endif

/* ------------------------------------------------------------ host */

#define MAX_URIS 512
#define RESP_CAP (1u << 20)
#define ATOM_CAP 65536
#define MAX_PORTS 32

typedef struct {
    uint32_t frame; /* absolute frame of the render */
    int note, vel;  /* note-on when note >= 0 */
    const char *path; /* patch:Set of the model when non-NULL */
} Event;

typedef struct {
    LilvWorld *world;
    const LilvPlugin *plugin;
    LilvInstance *inst;
    double rate;
    uint32_t max_block;

    char *uris[MAX_URIS];
    uint32_t n_uris;
    LV2_URID_Map map;
    LV2_URID_Unmap unmap;
    LV2_Log_Log log;
    LV2_Worker_Schedule sched;
    int32_t min_block, max_block_opt, seq_size;
    float rate_f;
    LV2_Options_Option opts[5];
    LV2_Feature f_map, f_unmap, f_log, f_sched, f_opts, f_bounded;
    const LV2_Feature *features[8];

    const LV2_Worker_Interface *worker;
    uint32_t n_ports;
    float ctl[MAX_PORTS];
    int p_control, p_notify, p_out[2];
    LV2_Atom_Sequence *atom_in, *atom_out;
    float *audio[2];

    uint8_t *resp;     /* queued responses: [u32 size][data, padded to 8] ... */
    size_t resp_len;
    long scheduled;    /* schedule_work calls */
    bool defer;        /* run work() after run() instead of inside schedule_work() */
    bool drop_jobs;    /* bench: discard scheduled work (refills) while timing run() */
    uint8_t *jobs;
    size_t jobs_len;
    long work_calls;
    int log_errors;
    char last_log[512];
    bool quiet;
    int notified_paths;

    LV2_Atom_Forge forge;
    LV2_URID atom_Path, atom_Float, atom_URID, midi_Event, patch_Set, patch_property,
        patch_value, nf_model, log_Error, log_Warning;
} Host;

static LV2_URID map_uri(LV2_URID_Map_Handle handle, const char *uri)
{
    Host *h = handle;
    for (uint32_t i = 0; i < h->n_uris; i++)
        if (!strcmp(h->uris[i], uri)) return i + 1;
    if (h->n_uris >= MAX_URIS) return 0;
    h->uris[h->n_uris] = strdup(uri);
    return ++h->n_uris;
}

static const char *unmap_uri(LV2_URID_Unmap_Handle handle, LV2_URID urid)
{
    Host *h = handle;
    return urid >= 1 && urid <= h->n_uris ? h->uris[urid - 1] : NULL;
}

static int log_vprintf(LV2_Log_Handle handle, LV2_URID type, const char *fmt, va_list ap)
{
    Host *h = handle;
    vsnprintf(h->last_log, sizeof h->last_log, fmt, ap);
    if (type == h->log_Error) h->log_errors++;
    if (!h->quiet) fprintf(stderr, "[plugin log] %s", h->last_log);
    return 0;
}

static int log_printf(LV2_Log_Handle handle, LV2_URID type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = log_vprintf(handle, type, fmt, ap);
    va_end(ap);
    return r;
}

static LV2_Worker_Status respond(LV2_Worker_Respond_Handle handle, uint32_t size,
                                 const void *data)
{
    Host *h = handle;
    size_t need = 8 + ((size + 7u) & ~7u);
    if (h->resp_len + need > RESP_CAP) return LV2_WORKER_ERR_NO_SPACE;
    memcpy(h->resp + h->resp_len, &size, 4);
    memcpy(h->resp + h->resp_len + 8, data, size);
    h->resp_len += need;
    return LV2_WORKER_SUCCESS;
}

/* The synchronous worker: work() runs now, with heap counting off (it may allocate). */
static LV2_Worker_Status schedule_work(LV2_Worker_Schedule_Handle handle, uint32_t size,
                                       const void *data)
{
    Host *h = handle;
    h->scheduled++;
    if (!h->worker) return LV2_WORKER_ERR_UNKNOWN;
    if (h->defer && h->drop_jobs) return LV2_WORKER_SUCCESS;
    if (h->defer) {
        size_t need = 8 + ((size + 7u) & ~7u);
        if (h->jobs_len + need > RESP_CAP) return LV2_WORKER_ERR_NO_SPACE;
        memcpy(h->jobs + h->jobs_len, &size, 4);
        memcpy(h->jobs + h->jobs_len + 8, data, size);
        h->jobs_len += need;
        return LV2_WORKER_SUCCESS;
    }
    int was = count_heap;
    count_heap = 0;
    h->work_calls++;
    LV2_Worker_Status st = h->worker->work(lilv_instance_get_handle(h->inst), respond, h,
                                           size, data);
    count_heap = was;
    return st;
}

static void deliver_responses(Host *h)
{
    LV2_Handle ph = lilv_instance_get_handle(h->inst);
    if (h->defer) {
        int was = count_heap;
        count_heap = 0;
        for (size_t off = 0; off < h->jobs_len;) {
            uint32_t size;
            memcpy(&size, h->jobs + off, 4);
            h->work_calls++;
            h->worker->work(ph, respond, h, size, h->jobs + off + 8);
            off += 8 + ((size + 7u) & ~7u);
        }
        h->jobs_len = 0;
        count_heap = was;
    }
    /* work_response() may schedule more work (frees), whose responses are appended */
    size_t off = 0;
    while (off < h->resp_len) {
        uint32_t size;
        memcpy(&size, h->resp + off, 4);
        if (h->worker->work_response) h->worker->work_response(ph, size, h->resp + off + 8);
        off += 8 + ((size + 7u) & ~7u);
    }
    h->resp_len = 0;
    if (h->worker->end_run) h->worker->end_run(ph);
}

enum { WITH_MAP = 1, WITH_SCHED = 2, WITH_ALL = 3 };

static Host *host_new(LilvWorld *world, double rate, uint32_t max_block, int which,
                      LilvInstance **inst_out)
{
    Host *h = calloc(1, sizeof *h);
    h->world = world;
    h->rate = rate;
    h->max_block = max_block;
    h->resp = malloc(RESP_CAP);
    h->jobs = malloc(RESP_CAP);
    h->quiet = getenv("NF_HOST_VERBOSE") == NULL;
    LilvNode *uri = lilv_new_uri(world, NF_URI);
    h->plugin = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), uri);
    lilv_node_free(uri);
    if (!h->plugin) {
        fprintf(stderr, "plugin %s not found (LV2_PATH?)\n", NF_URI);
        exit(2);
    }
    h->map = (LV2_URID_Map){h, map_uri};
    h->unmap = (LV2_URID_Unmap){h, unmap_uri};
    h->log = (LV2_Log_Log){h, log_printf, log_vprintf};
    h->sched = (LV2_Worker_Schedule){h, schedule_work};
    h->atom_Path = map_uri(h, LV2_ATOM__Path);
    h->atom_Float = map_uri(h, LV2_ATOM__Float);
    h->atom_URID = map_uri(h, LV2_ATOM__URID);
    h->midi_Event = map_uri(h, LV2_MIDI__MidiEvent);
    h->patch_Set = map_uri(h, LV2_PATCH__Set);
    h->patch_property = map_uri(h, LV2_PATCH__property);
    h->patch_value = map_uri(h, LV2_PATCH__value);
    h->nf_model = map_uri(h, NF_URI "#model");
    h->log_Error = map_uri(h, LV2_LOG__Error);
    h->log_Warning = map_uri(h, LV2_LOG__Warning);
    lv2_atom_forge_init(&h->forge, &h->map);

    h->min_block = 1;
    h->max_block_opt = (int32_t)max_block;
    h->seq_size = ATOM_CAP;
    h->rate_f = (float)rate;
    LV2_URID t_int = map_uri(h, LV2_ATOM__Int), t_float = h->atom_Float;
    h->opts[0] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0, map_uri(h, LV2_BUF_SIZE__minBlockLength), sizeof(int32_t), t_int, &h->min_block};
    h->opts[1] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0, map_uri(h, LV2_BUF_SIZE__maxBlockLength), sizeof(int32_t), t_int, &h->max_block_opt};
    h->opts[2] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0, map_uri(h, LV2_BUF_SIZE__sequenceSize), sizeof(int32_t), t_int, &h->seq_size};
    h->opts[3] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0, map_uri(h, LV2_PARAMETERS__sampleRate), sizeof(float), t_float, &h->rate_f};
    h->opts[4] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0, 0, 0, 0, NULL};

    h->f_map = (LV2_Feature){LV2_URID__map, &h->map};
    h->f_unmap = (LV2_Feature){LV2_URID__unmap, &h->unmap};
    h->f_log = (LV2_Feature){LV2_LOG__log, &h->log};
    h->f_sched = (LV2_Feature){LV2_WORKER__schedule, &h->sched};
    h->f_opts = (LV2_Feature){LV2_OPTIONS__options, h->opts};
    h->f_bounded = (LV2_Feature){LV2_BUF_SIZE__boundedBlockLength, NULL};
    int k = 0;
    if (which & WITH_MAP) h->features[k++] = &h->f_map;
    h->features[k++] = &h->f_unmap;
    h->features[k++] = &h->f_log;
    if (which & WITH_SCHED) h->features[k++] = &h->f_sched;
    h->features[k++] = &h->f_opts;
    h->features[k++] = &h->f_bounded;
    h->features[k] = NULL;

    h->inst = lilv_plugin_instantiate(h->plugin, rate, h->features);
    if (inst_out) *inst_out = h->inst;
    if (!h->inst) return h;
    h->worker = lilv_instance_get_extension_data(h->inst, LV2_WORKER__interface);

    h->n_ports = lilv_plugin_get_num_ports(h->plugin);
    float mins[MAX_PORTS], maxs[MAX_PORTS], defs[MAX_PORTS];
    lilv_plugin_get_port_ranges_float(h->plugin, mins, maxs, defs);
    h->atom_in = calloc(1, ATOM_CAP);
    h->atom_out = calloc(1, ATOM_CAP);
    h->audio[0] = calloc(max_block + 1, sizeof(float));
    h->audio[1] = calloc(max_block + 1, sizeof(float));
    LilvNode *atom_port = lilv_new_uri(world, LV2_ATOM__AtomPort);
    LilvNode *audio_port = lilv_new_uri(world, LV2_CORE__AudioPort);
    LilvNode *input = lilv_new_uri(world, LV2_CORE__InputPort);
    int audio_k = 0;
    for (uint32_t i = 0; i < h->n_ports && i < MAX_PORTS; i++) {
        const LilvPort *port = lilv_plugin_get_port_by_index(h->plugin, i);
        if (lilv_port_is_a(h->plugin, port, atom_port)) {
            if (lilv_port_is_a(h->plugin, port, input)) {
                h->p_control = (int)i;
                lilv_instance_connect_port(h->inst, i, h->atom_in);
            } else {
                h->p_notify = (int)i;
                lilv_instance_connect_port(h->inst, i, h->atom_out);
            }
        } else if (lilv_port_is_a(h->plugin, port, audio_port)) {
            h->p_out[audio_k] = (int)i;
            lilv_instance_connect_port(h->inst, i, h->audio[audio_k]);
            audio_k++;
        } else {
            h->ctl[i] = isnan(defs[i]) ? 0.0f : defs[i];
            lilv_instance_connect_port(h->inst, i, &h->ctl[i]);
        }
    }
    lilv_node_free(atom_port);
    lilv_node_free(audio_port);
    lilv_node_free(input);
    return h;
}

static void host_free(Host *h)
{
    if (h->inst) {
        lilv_instance_deactivate(h->inst);
        lilv_instance_free(h->inst);
    }
    for (uint32_t i = 0; i < h->n_uris; i++) free(h->uris[i]);
    free(h->atom_in);
    free(h->atom_out);
    free(h->audio[0]);
    free(h->audio[1]);
    free(h->resp);
    free(h->jobs);
    free(h);
}

static int port_index(Host *h, const char *symbol)
{
    LilvNode *sym = lilv_new_string(h->world, symbol);
    const LilvPort *port = lilv_plugin_get_port_by_symbol(h->plugin, sym);
    lilv_node_free(sym);
    return port ? (int)lilv_port_get_index(h->plugin, port) : -1;
}

static void set_control(Host *h, const char *symbol, float v)
{
    int i = port_index(h, symbol);
    if (i >= 0) h->ctl[i] = v;
}

static float get_control(Host *h, const char *symbol)
{
    int i = port_index(h, symbol);
    return i >= 0 ? h->ctl[i] : NAN;
}

/* One cycle of n frames (n <= max_block) with events at offsets [0, n). */
static void host_cycle(Host *h, uint32_t n, const Event *ev, int nev, uint32_t base)
{
    lv2_atom_forge_set_buffer(&h->forge, (uint8_t *)h->atom_in, ATOM_CAP);
    LV2_Atom_Forge_Frame seq;
    lv2_atom_forge_sequence_head(&h->forge, &seq, 0);
    for (int k = 0; k < nev; k++) {
        lv2_atom_forge_frame_time(&h->forge, ev[k].frame - base);
        if (ev[k].path) {
            LV2_Atom_Forge_Frame obj;
            lv2_atom_forge_object(&h->forge, &obj, 0, h->patch_Set);
            lv2_atom_forge_key(&h->forge, h->patch_property);
            lv2_atom_forge_urid(&h->forge, h->nf_model);
            lv2_atom_forge_key(&h->forge, h->patch_value);
            lv2_atom_forge_path(&h->forge, ev[k].path, (uint32_t)strlen(ev[k].path));
            lv2_atom_forge_pop(&h->forge, &obj);
        } else {
            uint8_t msg[3] = {0x90, (uint8_t)ev[k].note, (uint8_t)ev[k].vel};
            lv2_atom_forge_atom(&h->forge, 3, h->midi_Event);
            lv2_atom_forge_write(&h->forge, msg, 3);
        }
    }
    lv2_atom_forge_pop(&h->forge, &seq);
    /* atom outputs are reset to their capacity before every cycle */
    h->atom_out->atom.type = 0;
    h->atom_out->atom.size = ATOM_CAP - sizeof(LV2_Atom);

    count_heap = 1;
    lilv_instance_run(h->inst, n);
    deliver_responses(h);
    count_heap = 0;

    LV2_ATOM_SEQUENCE_FOREACH (h->atom_out, e) {
        if (e->body.type == h->forge.Object) {
            const LV2_Atom_Object *o = (const LV2_Atom_Object *)&e->body;
            if (o->body.otype == h->patch_Set) h->notified_paths++;
        }
    }
}

/* Render `frames` frames in blocks of `block` (the last block may be shorter) into
 * out[2][frames] (may be NULL), with events at absolute frames. */
static void host_render(Host *h, uint32_t frames, uint32_t block, const Event *ev, int nev,
                        float *outL, float *outR)
{
    int k = 0;
    for (uint32_t pos = 0; pos < frames;) {
        uint32_t n = frames - pos < block ? frames - pos : block;
        int k0 = k;
        while (k < nev && ev[k].frame < pos + n) k++;
        host_cycle(h, n, ev + k0, k - k0, pos);
        if (outL) memcpy(outL + pos, h->audio[0], n * sizeof(float));
        if (outR) memcpy(outR + pos, h->audio[1], n * sizeof(float));
        pos += n;
    }
}

/* Run silent cycles until the worker is idle (a cycle in which the plugin scheduled
 * nothing). Returns the number of cycles, or -1 if it never settled. */
static int host_wait_idle(Host *h, uint32_t block, int max_cycles)
{
    for (int c = 0; c < max_cycles; c++) {
        long before = h->scheduled;
        host_cycle(h, block, NULL, 0, 0);
        if (h->scheduled == before) return c;
    }
    return -1;
}

static void set_control(Host *h, const char *symbol, float v);

static Host *host_start(LilvWorld *world, double rate, uint32_t max_block)
{
    Host *h = host_new(world, rate, max_block, WITH_ALL, NULL);
    if (!h->inst) {
        fprintf(stderr, "instantiate failed\n");
        exit(2);
    }
    /* the default state (port defaults) before activate */
    LilvState *def = lilv_state_new_from_world(world, &h->map,
                                               lilv_plugin_get_uri(h->plugin));
    if (def) {
        lilv_state_restore(def, h->inst, NULL, NULL, 0, h->features);
        lilv_state_free(def);
    }
    lilv_instance_activate(h->inst);
    /* Fast settings for the tests (the models are untrained, and the machine is shared):
     * two sampler steps, no guidance pass, two takes per note, independent takes. Tests
     * that need others set them. */
    set_control(h, "steps", 2);
    set_control(h, "guidance", 1);
    set_control(h, "pool", 2);
    set_control(h, "variation", 1);
    return h;
}

/* Load a model by patch:Set and wait until every pool is rendered. */
static int host_load(Host *h, const char *path)
{
    Event e = {0, -1, 0, path};
    host_cycle(h, 64, &e, 1, 0);
    return host_wait_idle(h, 64, 200000);
}

/* ------------------------------------------------------------ signals */

static double peak_of(const float *x, size_t n)
{
    double p = 0;
    for (size_t i = 0; i < n; i++) p = fmax(p, fabs(x[i]));
    return p;
}

static double rms_of(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? sqrt(s / n) : 0;
}

static long nonfinite_of(const float *x, size_t n)
{
    long c = 0;
    for (size_t i = 0; i < n; i++) c += !isfinite(x[i]);
    return c;
}

static double maxdiff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* Index one past the last sample above `thr` (the audible length of a hit). */
static size_t tail_end(const float *x, size_t n, float thr)
{
    size_t e = 0;
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) > thr) e = i + 1;
    return e;
}

/* Spectral centroid in Hz of x[0..n) by a direct DFT (n small). */
static double centroid_hz(const float *x, size_t n, double rate)
{
    double num = 0, den = 0;
    for (size_t k = 1; k < n / 2; k++) {
        double re = 0, im = 0, w = 2 * M_PI * (double)k / (double)n;
        for (size_t i = 0; i < n; i++) {
            double hann = 0.5 - 0.5 * cos(2 * M_PI * (double)i / (double)n);
            re += hann * x[i] * cos(w * (double)i);
            im -= hann * x[i] * sin(w * (double)i);
        }
        double mag = sqrt(re * re + im * im);
        num += mag * (double)k * rate / (double)n;
        den += mag;
    }
    return den > 0 ? num / den : 0;
}

static int write_wav(const char *path, const float *L, const float *R, size_t n, int rate)
{
    SF_INFO info = {0};
    info.samplerate = rate;
    info.channels = 2;
    info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    SNDFILE *f = sf_open(path, SFM_WRITE, &info);
    if (!f) return -1;
    float *inter = malloc(n * 2 * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        inter[2 * i] = L[i];
        inter[2 * i + 1] = R[i];
    }
    sf_writef_float(f, inter, (sf_count_t)n);
    sf_close(f);
    free(inter);
    return 0;
}

static void print_stats(const char *what, const float *L, const float *R, size_t n)
{
    printf("%s: peak %.4f rms %.5f non-finite %ld\n", what,
           fmax(peak_of(L, n), peak_of(R, n)), sqrt(0.5 * (pow(rms_of(L, n), 2) + pow(rms_of(R, n), 2))),
           nonfinite_of(L, n) + nonfinite_of(R, n));
}

/* ------------------------------------------------------------ model fixtures */

static const char *scratch;

/* A model file for the tests: classes (comma-separated; "" = unconditional), the model's
 * sample rate and length in samples. */
static void make_model(const char *path, const char *classes, int rate, int length)
{
    /* tests/plugin/make_test_model writes a small untrained checkpoint */
    const char *maker = getenv("NF_PLUGIN_MODEL_MAKER");
    if (!maker) {
        fprintf(stderr, "NF_PLUGIN_MODEL_MAKER is not set\n");
        exit(2);
    }
    char r[32], l[32];
    snprintf(r, sizeof r, "%d", rate);
    snprintf(l, sizeof l, "%d", length);
    pid_t pid = fork();
    if (pid == 0) {
        execl(maker, maker, path, classes, r, l, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s failed for %s\n", maker, path);
        exit(2);
    }
}

static char *spath(const char *name)
{
    static char buf[8][NF_PATH_MAX];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, NF_PATH_MAX, "%s/%s", scratch, name);
    return b;
}

/* small models keep the tests quick: 2000 samples at 16 kHz = 0.125 s, 6000 frames at
 * 48 kHz */
#define KIT_CLASSES "kick,snare,closed_hat"
#define KIT_LEN 2000

/* ------------------------------------------------------------ tests */

/* A note gives finite, non-silent audio that ends; no note (and an unmapped note) gives
 * exact silence. */
static void test_basic(LilvWorld *world)
{
    make_model(spath("kit.model"), KIT_CLASSES, 16000, KIT_LEN);
    Host *h = host_start(world, 48000, 4096);
    CHECK(host_load(h, spath("kit.model")) >= 0, "worker never settled");
    CHECK(h->log_errors == 0, "unexpected log error: %s", h->last_log);
    uint32_t n = 48000;
    float *L = calloc(n, 4), *R = calloc(n, 4);
    host_render(h, n, 256, NULL, 0, L, R);
    CHECK(peak_of(L, n) == 0 && peak_of(R, n) == 0, "no note: not silent");
    Event un = {100, 20, 127, NULL}; /* note 20: not in the GM map */
    host_render(h, n, 256, &un, 1, L, R);
    CHECK(peak_of(L, n) == 0 && peak_of(R, n) == 0, "unmapped note: not silent");
    Event e = {100, 36, 127, NULL};
    host_render(h, n, 256, &e, 1, L, R);
    print_stats("kick", L, R, n);
    CHECK(nonfinite_of(L, n) + nonfinite_of(R, n) == 0, "non-finite samples");
    CHECK(peak_of(L, 100) == 0, "sound before the note-on");
    CHECK(peak_of(L, n) > 0.05, "kick too quiet: %g", peak_of(L, n));
    CHECK(rms_of(L, n) > 1e-4, "kick rms %g", rms_of(L, n));
    /* the model's sound is 0.125 s: at 48 kHz it lasts at most 6000 frames */
    size_t end = tail_end(L, n, 0);
    CHECK(end <= 100 + 6000 + 2, "hit lasts %zu frames", end);
    CHECK(end > 100 + 3000, "hit ends after %zu frames", end);
    host_render(h, n, 256, NULL, 0, L, R);
    CHECK(peak_of(L, n) == 0, "voice did not end");
    /* velocity scales gain */
    float *L2 = calloc(n, 4);
    Event soft = {100, 38, 64, NULL}, loud = {100, 38, 127, NULL};
    /* a pool of one take without variation: the same sound twice */
    set_control(h, "pool", 1);
    set_control(h, "variation", 0);
    host_wait_idle(h, 64, 100000);
    host_render(h, n, 256, &loud, 1, L, R);
    host_render(h, n, 256, &soft, 1, L2, R);
    double want = pow(64.0 / 127.0, 2);
    CHECK(fabs(peak_of(L2, n) / peak_of(L, n) - want) < 1e-3, "velocity ratio %g want %g",
          peak_of(L2, n) / peak_of(L, n), want);
    /* gain -6 dB */
    set_control(h, "gain", -6.0f);
    host_render(h, 4096, 256, NULL, 0, NULL, NULL); /* let the smoother settle */
    host_render(h, n, 256, &loud, 1, L2, R);
    CHECK(fabs(peak_of(L2, n) / peak_of(L, n) - pow(10, -6.0 / 20)) < 1e-3, "gain ratio %g",
          peak_of(L2, n) / peak_of(L, n));
    write_wav(spath("basic.wav"), L, R, n, 48000);
    free(L);
    free(R);
    free(L2);
    host_free(h);
}

/* Render a pattern: hits of `note` every `gap` frames. */
static void pattern(Host *h, int note, int hits, uint32_t gap, float *L, float *R)
{
    Event ev[64];
    for (int k = 0; k < hits; k++) ev[k] = (Event){(uint32_t)k * gap + 10, note, 100, NULL};
    host_render(h, (uint32_t)hits * gap, 256, ev, hits, L, R);
}

static void test_determinism(LilvWorld *world)
{
    make_model(spath("kit.model"), KIT_CLASSES, 16000, KIT_LEN);
    uint32_t gap = 8000, hits = 6, n = gap * hits;
    float *A = calloc(n, 4), *B = calloc(n, 4), *C = calloc(n, 4), *R = calloc(n, 4);
    for (int run = 0; run < 3; run++) {
        Host *h = host_start(world, 48000, 4096);
        if (run == 2) set_control(h, "seed", 77);
        CHECK(host_load(h, spath("kit.model")) >= 0, "never settled");
        pattern(h, 38, (int)hits, gap, run == 0 ? A : run == 1 ? B : C, R);
        host_free(h);
    }
    CHECK(maxdiff(A, B, n) == 0, "same seed: max diff %g", maxdiff(A, B, n));
    CHECK(maxdiff(A, C, n) > 1e-3, "another seed sounds the same");
    /* successive hits differ (pool 4, round robin, refills with new seeds) */
    for (uint32_t k = 1; k < hits; k++) {
        double d = maxdiff(A + (k - 1) * gap, A + k * gap, gap);
        CHECK(d > 1e-3, "hit %u equals hit %u", k, k - 1);
        CHECK(peak_of(A + k * gap, gap) > 0.01, "hit %u silent", k);
    }
    free(A);
    free(B);
    free(C);
    free(R);
}

static void state_save(Host *h, const char *dir);

/* No heap calls inside run() or work_response(), at any block size, while notes play,
 * takes arrive, pools refill and models swap. */
static void test_realtime(LilvWorld *world)
{
    make_model(spath("kit.model"), KIT_CLASSES, 16000, KIT_LEN);
    make_model(spath("kit2.model"), "kick,snare", 22050, 2000);
    static const uint32_t blocks[] = {1, 64, 256, 1000, 4096};
    Host *h = host_start(world, 48000, 4096);
    heap_calls = 0;
    CHECK(host_load(h, spath("kit.model")) >= 0, "never settled");
    CHECK(heap_calls == 0, "load: %ld heap calls in run/work_response", heap_calls);
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        heap_calls = 0;
        uint32_t n = 20000;
        Event ev[12];
        for (int k = 0; k < 12; k++)
            ev[k] = (Event){(uint32_t)k * 1500 + 3, 36 + (k % 4) * 2, 90 + k, NULL};
        host_render(h, n, blocks[b], ev, 12, NULL, NULL);
        long during = heap_calls;
        CHECK(during == 0, "block %u: %ld heap calls", blocks[b], during);
    }
    /* run(0), with and without events */
    heap_calls = 0;
    Event e0 = {0, 36, 100, NULL};
    host_cycle(h, 0, NULL, 0, 0);
    host_cycle(h, 0, &e0, 1, 0);
    CHECK(heap_calls == 0, "run(0): %ld heap calls", heap_calls);
    /* a model swap in the middle of playing */
    heap_calls = 0;
    Event sw[3] = {{10, 36, 100, NULL}, {300, -1, 0, spath("kit2.model")}, {900, 38, 100, NULL}};
    host_render(h, 4000, 64, sw, 3, NULL, NULL);
    host_wait_idle(h, 128, 100000);
    CHECK(heap_calls == 0, "model swap: %ld heap calls", heap_calls);
    printf("work() calls so far: %ld (their allocations are allowed)\n", h->work_calls);
    /* the counter sees what the plugin allocates (state save writes takes to files) */
    heap_calls = 0;
    count_heap = 1;
    state_save(h, spath("rt-state"));
    count_heap = 0;
    CHECK(heap_calls > 0, "the heap counter does not see allocations");
    host_free(h);
}

/* 44.1, 48 and 96 kHz: the take is resampled, so a hit lasts the same time (frames
 * scale with the rate) and has the same spectral centroid. */
static void test_rates(LilvWorld *world)
{
    make_model(spath("kit.model"), KIT_CLASSES, 16000, KIT_LEN);
    static const double rates[] = {44100, 48000, 96000};
    double cent[3], len_s[3];
    for (int r = 0; r < 3; r++) {
        Host *h = host_start(world, rates[r], 1024);
        set_control(h, "variation", 1.0f);
        CHECK(host_load(h, spath("kit.model")) >= 0, "never settled");
        uint32_t n = (uint32_t)rates[r];
        float *L = calloc(n, 4), *R = calloc(n, 4);
        Event e = {0, 36, 127, NULL};
        host_render(h, n, 512, &e, 1, L, R);
        CHECK(nonfinite_of(L, n) == 0, "non-finite at %g Hz", rates[r]);
        size_t end = tail_end(L, n, 1e-4f);
        len_s[r] = (double)end / rates[r];
        /* a 2048-point window at 48 kHz, scaled so that every rate sees the same 43 ms */
        size_t win = (size_t)lround(2048 * rates[r] / 48000.0);
        cent[r] = centroid_hz(L, win, rates[r]);
        printf("%g Hz: audible %.4f s (%zu frames), centroid %.1f Hz, peak %.3f\n", rates[r],
               len_s[r], end, cent[r], peak_of(L, n));
        CHECK(end <= (size_t)ceil(0.125 * rates[r]) + 2, "longer than the model's 0.125 s");
        free(L);
        free(R);
        host_free(h);
    }
    for (int r = 1; r < 3; r++) {
        CHECK(fabs(len_s[r] - len_s[0]) < 0.003, "length %g s vs %g s", len_s[r], len_s[0]);
        /* the model's content is band-limited to 8 kHz; centroids agree */
        CHECK(fabs(cent[r] - cent[0]) < 0.05 * cent[0], "centroid %g vs %g", cent[r], cent[0]);
    }
}

/* Port values for lilv state. */
static const void *get_port_value(const char *symbol, void *user, uint32_t *size,
                                  uint32_t *type)
{
    Host *h = user;
    int i = port_index(h, symbol);
    const LilvPort *port = i >= 0 ? lilv_plugin_get_port_by_index(h->plugin, (uint32_t)i) : NULL;
    LilvNode *control = lilv_new_uri(h->world, LV2_CORE__ControlPort);
    LilvNode *input = lilv_new_uri(h->world, LV2_CORE__InputPort);
    bool ok = port && lilv_port_is_a(h->plugin, port, control) &&
              lilv_port_is_a(h->plugin, port, input);
    lilv_node_free(control);
    lilv_node_free(input);
    if (!ok) {
        *size = *type = 0;
        return NULL;
    }
    *size = sizeof(float);
    *type = h->atom_Float;
    return &h->ctl[i];
}

static void set_port_value(const char *symbol, void *user, const void *value, uint32_t size,
                           uint32_t type)
{
    Host *h = user;
    int i = port_index(h, symbol);
    if (i >= 0 && size == sizeof(float) && type == h->atom_Float)
        memcpy(&h->ctl[i], value, sizeof(float));
}

static void state_save(Host *h, const char *dir)
{
    LilvState *st = lilv_state_new_from_instance(
        /* as jalv does: copies and links of outside files go into the state dir */
        h->plugin, h->inst, &h->map, NULL, dir, dir, dir, get_port_value, h,
        LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE, h->features);
    CHECK(st != NULL, "lilv_state_new_from_instance");
    if (!st) return;
    CHECK(lilv_state_save(h->world, &h->map, &h->unmap, st, NULL, dir, "state.ttl") == 0,
          "lilv_state_save %s", dir);
    lilv_state_free(st);
}

static void state_restore(Host *h, const char *dir)
{
    char file[NF_PATH_MAX];
    snprintf(file, sizeof file, "%s/state.ttl", dir);
    LilvState *st = lilv_state_new_from_file(h->world, &h->map, NULL, file);
    CHECK(st != NULL, "lilv_state_new_from_file %s", file);
    if (!st) return;
    lilv_state_restore(st, h->inst, set_port_value, h, 0, h->features);
    lilv_state_free(st);
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[NF_PATH_MAX + 512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat s;
        if (!lstat(p, &s) && S_ISDIR(s.st_mode)) rm_rf(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Save, new instance, restore: identical audio without re-rendering; a moved state
 * folder restores too; missing take files are rendered again. */
static void test_state(LilvWorld *world)
{
    make_model(spath("kit.model"), KIT_CLASSES, 16000, KIT_LEN);
    char dir[NF_PATH_MAX], moved[NF_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", spath("state-a"));
    snprintf(moved, sizeof moved, "%s", spath("state-moved"));
    rm_rf(dir);
    rm_rf(moved);
    uint32_t gap = 7000, hits = 10, n = gap * hits;
    float *A = calloc(n, 4), *B = calloc(n, 4), *R = calloc(n, 4);

    Host *h = host_start(world, 48000, 4096);
    set_control(h, "seed", 1234);
    set_control(h, "pool", 3);
    set_control(h, "variation", 0.7f);
    CHECK(host_load(h, spath("kit.model")) >= 0, "never settled");
    state_save(h, dir);
    CHECK(access(spath("kit.model"), R_OK) == 0, "saving the state lost the model file");
    Event ev[20];
    for (uint32_t k = 0; k < hits; k++)
        ev[k] = (Event){k * gap + 5, (k % 2) ? 38 : 42, 100 - (int)k, NULL};
    host_render(h, n, 256, ev, (int)hits, A, R);
    host_free(h);

    for (int round = 0; round < 2; round++) {
        if (round == 1) CHECK(rename(dir, moved) == 0, "rename state dir");
        Host *g = host_start(world, 48000, 4096);
        state_restore(g, round ? moved : dir);
        CHECK(get_control(g, "seed") == 1234, "seed port restored: %g", get_control(g, "seed"));
        CHECK(get_control(g, "pool") == 3, "pool port restored");
        long work_before = g->work_calls;
        int cycles = host_wait_idle(g, 64, 100000);
        /* nothing to render: at most the settings message and no rendering chunks */
        CHECK(cycles >= 0 && cycles <= 1, "restore re-rendered (%d cycles)", cycles);
        CHECK(g->work_calls - work_before <= 2, "restore did %ld worker jobs",
              g->work_calls - work_before);
        memset(B, 0, n * 4);
        host_render(g, n, 256, ev, (int)hits, B, R);
        CHECK(maxdiff(A, B, n) == 0, "round %d: restored render differs by %g", round,
              maxdiff(A, B, n));
        CHECK(peak_of(B, n) > 0.01, "restored render silent");
        host_free(g);
    }
    /* missing take files: tolerated, rendered again */
    char f[NF_PATH_MAX + 512];
    DIR *d = opendir(moved);
    struct dirent *e;
    int removed = 0;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "take-", 5)) {
            snprintf(f, sizeof f, "%s/%s", moved, e->d_name);
            removed += unlink(f) == 0;
        }
    if (d) closedir(d);
    CHECK(removed > 0, "no take files were saved");
    Host *g = host_start(world, 48000, 4096);
    state_restore(g, moved);
    CHECK(host_wait_idle(g, 64, 100000) > 1, "missing takes were not rendered again");
    memset(B, 0, n * 4);
    host_render(g, n, 256, ev, (int)hits, B, R);
    /* the same seeds and counters: rendering again gives the same takes */
    CHECK(maxdiff(A, B, n) < 1e-6, "re-rendered takes differ by %g", maxdiff(A, B, n));
    host_free(g);
    /* a state with no model key at all (an empty state) keeps the plugin working */
    free(A);
    free(B);
    free(R);
}

/* 20 model loads in a row, some in one cycle, some while notes play and takes render. */
static void test_loads(LilvWorld *world)
{
    make_model(spath("kit.model"), KIT_CLASSES, 16000, KIT_LEN);
    make_model(spath("kit2.model"), "kick,snare", 22050, 2000);
    make_model(spath("uncond.model"), "", 16000, 1500);
    const char *models[3] = {spath("kit.model"), spath("kit2.model"), spath("uncond.model")};
    Host *h = host_start(world, 48000, 512);
    Event ev[8];
    for (int k = 0; k < 20; k++) {
        int m = k % 3;
        int ne = 0;
        ev[ne++] = (Event){5, 36, 100, NULL};
        ev[ne++] = (Event){10, -1, 0, models[m]};
        if (k % 4 == 0) ev[ne++] = (Event){20, -1, 0, models[(m + 1) % 3]}; /* two at once */
        ev[ne++] = (Event){200, 38, 100, NULL};
        host_render(h, 512 * (1 + k % 3), 128, ev, ne, NULL, NULL);
    }
    CHECK(host_wait_idle(h, 128, 100000) >= 0, "never settled");
    /* last load was models[19 % 3] = kit2 */
    uint32_t n = 8000;
    float *L = calloc(n, 4), *R = calloc(n, 4);
    Event e = {0, 36, 127, NULL};
    host_render(h, n, 512, &e, 1, L, R);
    CHECK(peak_of(L, n) > 0.05, "plays after 20 loads");
    /* the unconditional model plays on any note */
    host_load(h, models[2]);
    Event e2 = {0, 77, 127, NULL};
    host_render(h, n, 512, &e2, 1, L, R);
    CHECK(peak_of(L, n) > 0.05, "unconditional model: note 77 silent");
    CHECK(h->log_errors == 0, "log error: %s", h->last_log);
    free(L);
    free(R);
    host_free(h);
}

/* A missing or corrupt model: a log message, silence, no crash, and a good model loads
 * afterwards. */
static void test_bad_model(LilvWorld *world)
{
    make_model(spath("kit.model"), KIT_CLASSES, 16000, KIT_LEN);
    FILE *f = fopen(spath("corrupt.model"), "wb");
    for (int i = 0; i < 1000; i++) fputc((i * 7919) & 0xFF, f);
    fclose(f);
    f = fopen(spath("empty.model"), "wb");
    fclose(f);
    const char *bad[3] = {spath("does-not-exist.model"), spath("corrupt.model"),
                          spath("empty.model")};
    Host *h = host_start(world, 48000, 1024);
    CHECK(host_load(h, spath("kit.model")) >= 0, "never settled");
    uint32_t n = 24000;
    float *L = calloc(n, 4), *R = calloc(n, 4);
    for (int b = 0; b < 3; b++) {
        int before = h->log_errors;
        CHECK(host_load(h, bad[b]) >= 0, "never settled");
        CHECK(h->log_errors == before + 1, "%s: %d log errors", bad[b], h->log_errors - before);
        printf("log for %s: %s", bad[b], h->last_log);
        Event e = {0, 36, 127, NULL};
        host_render(h, n, 256, &e, 1, L, R);
        CHECK(peak_of(L, n) == 0 && peak_of(R, n) == 0, "%s: not silent", bad[b]);
    }
    CHECK(host_load(h, spath("kit.model")) >= 0, "never settled");
    Event e = {0, 36, 127, NULL};
    host_render(h, n, 256, &e, 1, L, R);
    CHECK(peak_of(L, n) > 0.05, "good model after bad ones: silent");
    free(L);
    free(R);
    host_free(h);
}

static void test_features(LilvWorld *world)
{
    LilvInstance *inst = NULL;
    Host *h = host_new(world, 48000, 256, WITH_SCHED, &inst);
    CHECK(inst == NULL, "instantiated without urid:map");
    host_free(h);
    h = host_new(world, 48000, 256, WITH_MAP, &inst);
    CHECK(inst == NULL, "instantiated without work:schedule");
    host_free(h);
    h = host_new(world, 48000, 256, WITH_ALL, &inst);
    CHECK(inst != NULL, "did not instantiate with every feature");
    /* activate / deactivate cycles */
    for (int k = 0; k < 3 && inst; k++) {
        lilv_instance_activate(inst);
        host_render(h, 1024, 256, NULL, 0, NULL, NULL);
        lilv_instance_deactivate(inst);
    }
    if (inst) lilv_instance_activate(inst);
    host_free(h);
}

/* Every preset loads through lilv, sets its port values and keeps the model. */
static void test_presets(LilvWorld *world)
{
    make_model(spath("kit.model"), KIT_CLASSES, 16000, KIT_LEN);
    Host *h = host_start(world, 48000, 1024);
    CHECK(host_load(h, spath("kit.model")) >= 0, "never settled");
    LilvNode *pset = lilv_new_uri(world, LV2_PRESETS__Preset);
    LilvNodes *presets = lilv_plugin_get_related(h->plugin, pset);
    int count = 0, tight = 0, loose = 0;
    LILV_FOREACH (nodes, i, presets) {
        const LilvNode *preset = lilv_nodes_get(presets, i);
        lilv_world_load_resource(world, preset);
        LilvState *st = lilv_state_new_from_world(world, &h->map, preset);
        CHECK(st != NULL, "preset %s does not load", lilv_node_as_uri(preset));
        if (!st) continue;
        char label_buf[128];
        snprintf(label_buf, sizeof label_buf, "%s",
                 lilv_state_get_label(st) ? lilv_state_get_label(st) : "?");
        const char *label = label_buf;
        printf("preset %s (%s)\n", lilv_node_as_uri(preset), label ? label : "?");
        lilv_state_restore(st, h->inst, set_port_value, h, 0, h->features);
        lilv_state_free(st);
        CHECK(host_wait_idle(h, 256, 100000) >= 0, "never settled");
        uint32_t n = 24000;
        float *L = calloc(n, 4), *R = calloc(n, 4);
        Event e = {0, 38, 127, NULL};
        host_render(h, n, 256, &e, 1, L, R);
        CHECK(peak_of(L, n) > 0.01, "silent after preset %s", label ? label : "?");
        free(L);
        free(R);
        if (label && !strcmp(label, "Tight kit")) {
            tight++;
            CHECK(get_control(h, "pool") == 2 && get_control(h, "variation") == 0,
                  "tight kit values");
        }
        if (label && !strcmp(label, "Loose kit")) {
            loose++;
            CHECK(get_control(h, "pool") == 8, "loose kit pool");
        }
        count++;
    }
    CHECK(count >= 2 && tight == 1 && loose == 1, "presets found: %d", count);
    CHECK(h->log_errors == 0, "log error: %s", h->last_log);
    lilv_nodes_free(presets);
    lilv_node_free(pset);
    host_free(h);
}

/* ------------------------------------------------------------ tools */

static int cmd_render(LilvWorld *world, const char *model, const char *out, double rate)
{
    Host *h = host_start(world, rate, 512);
    if (host_load(h, model) < 0) return 1;
    uint32_t n = (uint32_t)(rate * 4);
    float *L = calloc(n, 4), *R = calloc(n, 4);
    Event ev[16];
    static const int notes[8] = {36, 42, 38, 42, 36, 36, 38, 46};
    for (int k = 0; k < 16; k++)
        ev[k] = (Event){(uint32_t)(k * rate / 4), notes[k % 8], 70 + (k * 37) % 57, NULL};
    host_render(h, n, 512, ev, 16, L, R);
    print_stats(out, L, R, n);
    write_wav(out, L, R, n, (int)rate);
    free(L);
    free(R);
    host_free(h);
    return 0;
}

/* Load a model, render every pool and save the state (with its takes) to `dir`, for
 * jalv -l in the smoke test. Uses the tests' fast settings. */
static int cmd_savestate(LilvWorld *world, const char *model, const char *dir)
{
    Host *h = host_start(world, 48000, 1024);
    if (host_load(h, model) < 0 || h->log_errors) return 1;
    state_save(h, dir);
    host_free(h);
    return nf_test_failed ? 1 : 0;
}

/* Peak, RMS and non-finite samples of a sound file; fails when silent or not finite. */
static int cmd_wavstats(const char *path, double min_peak)
{
    SF_INFO info = {0};
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, sf_strerror(NULL));
        return 1;
    }
    size_t n = (size_t)info.frames * (size_t)info.channels;
    float *x = malloc((n + 1) * sizeof(float));
    sf_readf_float(f, x, info.frames);
    sf_close(f);
    double pk = peak_of(x, n), rms = rms_of(x, n);
    long bad = nonfinite_of(x, n);
    printf("%s: %lld frames, %d channels, %d Hz: peak %.4f rms %.5f non-finite %ld\n", path,
           (long long)info.frames, info.channels, info.samplerate, pk, rms, bad);
    free(x);
    return (bad == 0 && pk >= min_peak && info.frames > 0) ? 0 : 1;
}

static int cmd_bench(LilvWorld *world, const char *model)
{
    if (!model) {
        scratch = "/tmp";
        /* 0.5 s sounds at 16 kHz */
        make_model(spath("nf-bench-kit.model"), KIT_CLASSES, 16000, 8000);
        model = spath("nf-bench-kit.model");
    }
    Host *h = host_start(world, 48000, 256);
    h->defer = true; /* time run() alone, not the rendering it schedules */
    /* the plugin's own defaults, not the tests' fast settings */
    set_control(h, "steps", 20);
    set_control(h, "guidance", 2);
    set_control(h, "pool", 4);
    set_control(h, "variation", 0.5f);
    /* load to first playable take: cycles until a kick sounds, timed in wall clock */
    double t0 = nf_now();
    Event e = {0, -1, 0, model};
    host_cycle(h, 256, &e, 1, 0);
    double t_first = -1;
    for (int c = 0; c < 1000000; c++) {
        Event hit = {0, 36, 127, NULL};
        host_cycle(h, 256, &hit, 1, 0);
        if (peak_of(h->audio[0], 256) > 0) {
            t_first = nf_now() - t0;
            break;
        }
    }
    host_wait_idle(h, 256, 1000000);
    double t_all = nf_now() - t0;
    printf("load to first playable take: %.3f s; all pools ready: %.3f s\n", t_first, t_all);
    fflush(stdout);

    /* 16 voices sounding: long takes (length 1), pitched down so that they last */
    set_control(h, "tune", -12);
    Event hits[16];
    static const int notes[8] = {36, 38, 42, 46, 45, 49, 51, 39};
    for (int k = 0; k < 16; k++) hits[k] = (Event){(uint32_t)k, notes[k % 8], 100, NULL};
    host_cycle(h, 256, hits, 16, 0);
    int cycles = 2000;
    /* refills would keep the worker busy for minutes; run() alone is timed */
    h->drop_jobs = true;
    LV2_Handle ph = lilv_instance_get_handle(h->inst);
    (void)ph;
    double best = 1e9, total = 0;
    int measured = 0;
    for (int c = 0; c < cycles; c++) {
        if (c % 150 == 0) host_cycle(h, 256, hits, 16, 0); /* keep 16 voices going */
        double a = nf_now();
        lilv_instance_run(h->inst, 256);
        double d = nf_now() - a;
        deliver_responses(h);
        total += d;
        measured++;
        if (d < best) best = d;
    }
    double budget = 256.0 / 48000.0;
    printf("run() at 48 kHz, 256 frames, 16 voices: mean %.2f us (%.3f%% of the %.2f ms "
           "budget), best %.2f us (%.3f%%)\n",
           1e6 * total / measured, 100 * total / measured / budget, 1e3 * budget, 1e6 * best,
           100 * best / budget);
    host_free(h);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: nf_lv2host test <case> <scratch-dir> | render <model> "
                        "<out.wav> [rate] | bench <model>\n");
        return 2;
    }
    heap_counting_init();
    if (!strcmp(argv[1], "wavstats")) return argc >= 3 ? cmd_wavstats(argv[2], argc > 3 ? atof(argv[3]) : 0.01) : 2;
    LilvWorld *world = lilv_world_new();
    lilv_world_load_all(world);
    /* Keep the plugin's module mapped after lilv's dlclose(): what its globals still point
     * to at exit is then "reachable", not a leak LeakSanitizer cannot attribute. */
    {
        LilvNode *uri = lilv_new_uri(world, NF_URI);
        const LilvPlugin *pl = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), uri);
        lilv_node_free(uri);
        char *lib = pl ? lilv_file_uri_parse(lilv_node_as_uri(lilv_plugin_get_library_uri(pl)), NULL)
                       : NULL;
        if (lib) dlopen(lib, RTLD_NOW | RTLD_NODELETE);
        lilv_free(lib);
    }
    int rc = 0;
    if (!strcmp(argv[1], "test") && argc >= 4) {
        scratch = argv[3];
        mkdir(scratch, 0777);
        const char *c = argv[2];
        if (!strcmp(c, "basic")) test_basic(world);
        else if (!strcmp(c, "determinism")) test_determinism(world);
        else if (!strcmp(c, "realtime")) test_realtime(world);
        else if (!strcmp(c, "rates")) test_rates(world);
        else if (!strcmp(c, "state")) test_state(world);
        else if (!strcmp(c, "loads")) test_loads(world);
        else if (!strcmp(c, "bad_model")) test_bad_model(world);
        else if (!strcmp(c, "features")) test_features(world);
        else if (!strcmp(c, "presets")) test_presets(world);
        else {
            fprintf(stderr, "unknown test %s\n", c);
            return 2;
        }
        rc = nf_test_done();
    } else if (!strcmp(argv[1], "render") && argc >= 4) {
        rc = cmd_render(world, argv[2], argv[3], argc > 4 ? atof(argv[4]) : 48000);
    } else if (!strcmp(argv[1], "savestate") && argc >= 4) {
        rc = cmd_savestate(world, argv[2], argv[3]);
    } else if (!strcmp(argv[1], "wavstats") && argc >= 3) {
        rc = cmd_wavstats(argv[2], argc > 3 ? atof(argv[3]) : 0.01);
    } else if (!strcmp(argv[1], "bench")) {
        rc = cmd_bench(world, argc > 2 ? argv[2] : NULL);
    } else {
        rc = 2;
    }
    lilv_world_free(world);
    return rc;
}
