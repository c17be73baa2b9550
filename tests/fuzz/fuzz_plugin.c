/* libFuzzer target: the LV2 plugin's state restore and its input messages. This file
 * is the host: plugin/noisefloor.c is compiled into the target and driven through its
 * descriptor, with a URID map, a log, and a worker that runs work() between run() calls
 * (as a single-threaded host does). The input chooses, in order:
 *   - the host sample rate (8 kHz .. 384 kHz) and the ten control-port values (raw
 *     floats: NaN, Inf and out-of-range values included);
 *   - a state to restore: values for the plugin's keys (model, takes, seed, steps,
 *     guidance, variation, pool) with any atom type and size; a takes index is written
 *     from the input's bytes;
 *   - a few audio cycles, each with control-port events: MIDI (any status and data
 *     bytes), and patch:Set / patch:Get objects whose properties and values have any
 *     key, type and body (paths: the tiny test model, a missing file, a garbage file,
 *     or the input's bytes as given).
 * Between cycles the model file may be deleted or replaced with garbage while loaded.
 * Every output sample must be finite. Paths never leave a private temporary folder
 * unless the input spells out a relative one (which resolves in the temp folder). */
#include "nf_test_model.h"

#include <lv2/atom/atom.h>
#include <lv2/atom/util.h>
#include <lv2/core/lv2.h>
#include <lv2/log/log.h>
#include <lv2/midi/midi.h>
#include <lv2/patch/patch.h>
#include <lv2/state/state.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const LV2_Descriptor *lv2_descriptor(uint32_t index);

#define NF_URI "https://noisefloor.dev/lv2/noisefloor"

/* ---- input reader ---- */
typedef struct {
    const uint8_t *p;
    size_t n;
} input;

static uint8_t u8(input *in)
{
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}
static float f32(input *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)u8(in) << (8 * i);
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static size_t bytes(input *in, void *out, size_t want)
{
    size_t k = want < in->n ? want : in->n;
    memcpy(out, in->p, k);
    in->p += k;
    in->n -= k;
    return k;
}

/* ---- URID map ---- */
static char *uris[256];
static int n_uris;
static LV2_URID map_uri(LV2_URID_Map_Handle h, const char *uri)
{
    (void)h;
    for (int i = 0; i < n_uris; i++)
        if (!strcmp(uris[i], uri)) return (LV2_URID)(i + 1);
    if (n_uris == 256) return 0;
    uris[n_uris] = strdup(uri);
    return (LV2_URID)(++n_uris);
}
static LV2_URID_Map map = {NULL, map_uri};
#define URID(u) map_uri(NULL, u)

/* ---- log: discard ---- */
static int log_vprintf(LV2_Log_Handle h, LV2_URID type, const char *fmt, va_list ap)
{
    (void)h;
    (void)type;
    char buf[512];
    return vsnprintf(buf, sizeof buf, fmt, ap);
}
static int log_printf(LV2_Log_Handle h, LV2_URID type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = log_vprintf(h, type, fmt, ap);
    va_end(ap);
    return r;
}
static LV2_Log_Log logger = {NULL, log_printf, log_vprintf};

/* ---- worker: queued requests, run after run(); responses delivered after that ---- */
#define QCAP 64
#define QMSG 4200
typedef struct {
    uint32_t size;
    uint8_t data[QMSG] __attribute__((aligned(16)));
} qmsg;
static qmsg requests[QCAP], responses[QCAP];
static int n_req, n_rsp;

static LV2_Worker_Status schedule_work(LV2_Worker_Schedule_Handle h, uint32_t size, const void *data)
{
    (void)h;
    if (n_req == QCAP || size > QMSG) return LV2_WORKER_ERR_NO_SPACE;
    requests[n_req].size = size;
    memcpy(requests[n_req].data, data, size);
    n_req++;
    return LV2_WORKER_SUCCESS;
}
static LV2_Worker_Status respond(LV2_Worker_Respond_Handle h, uint32_t size, const void *data)
{
    (void)h;
    if (n_rsp == QCAP || size > QMSG) return LV2_WORKER_ERR_NO_SPACE;
    responses[n_rsp].size = size;
    memcpy(responses[n_rsp].data, data, size);
    n_rsp++;
    return LV2_WORKER_SUCCESS;
}
static LV2_Worker_Schedule schedule = {NULL, schedule_work};

static void run_worker(const LV2_Worker_Interface *wi, LV2_Handle h)
{
    /* Requests made by work() itself (none today) wait for the next cycle. */
    static qmsg batch[QCAP];
    int n = n_req;
    memcpy(batch, requests, sizeof(qmsg) * (size_t)n);
    n_req = 0;
    for (int i = 0; i < n; i++) wi->work(h, respond, NULL, batch[i].size, batch[i].data);
    for (int i = 0; i < n_rsp; i++) wi->work_response(h, responses[i].size, responses[i].data);
    n_rsp = 0;
}

/* ---- files ---- */
static int model_damaged, allow_known;
static char dir[64], model_path[128], garbage_path[128], takes_path[128], take_wav[128];

static void make_model(void)
{
    nf_test_model_opts o;
    nf_test_model_opts_init(&o); /* 8 kHz mono, 64 samples */
    o.class_names = "kick,snare";
    o.net.base = 4;
    o.net.n_levels = 1;
    if (nf_test_model_save(&o, model_path)) abort();
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void cleanup(void)
{
    const char *files[] = {model_path, garbage_path, takes_path, take_wav};
    for (int i = 0; i < 4; i++)
        if (files[i][0]) unlink(files[i]);
    if (dir[0]) rmdir(dir);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/nf-fuzz-plugin-%d", (int)getpid());
    mkdir(dir, 0700);
    if (chdir(dir)) abort(); /* relative paths from the input land here */
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", dir);
    snprintf(garbage_path, sizeof garbage_path, "%s/garbage.safetensors", dir);
    snprintf(takes_path, sizeof takes_path, "%s/takes.txt", dir);
    snprintf(take_wav, sizeof take_wav, "%s/t.wav", dir);
    atexit(cleanup);
    make_model();
    /* A short stereo float take for index files that name "t.wav". */
    static const unsigned char hdr[44] = {'R', 'I', 'F', 'F', 36 + 64, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' ',
                                          16, 0, 0, 0, 3, 0, 2, 0, 0x44, 0xAC, 0, 0, 0x20, 0x62, 0x05, 0, 8, 0, 32, 0,
                                          'd', 'a', 't', 'a', 64, 0, 0, 0};
    unsigned char wav[44 + 64];
    memcpy(wav, hdr, 44);
    for (int i = 0; i < 16; i++) {
        float v = 0.5f * sinf((float)i);
        memcpy(wav + 44 + 4 * i, &v, 4);
    }
    write_file(take_wav, wav, sizeof wav);
}

/* A path chosen by the input: the model, a missing file, the garbage file, or raw bytes
 * (absolute ones are moved into the temp folder). */
static size_t pick_path(input *in, char *out, size_t cap)
{
    switch (u8(in) & 3) {
    case 0: return (size_t)snprintf(out, cap, "%s", model_path);
    case 1: return (size_t)snprintf(out, cap, "%s/missing.safetensors", dir);
    case 2: return (size_t)snprintf(out, cap, "%s", garbage_path);
    default: {
        char raw[300];
        size_t k = bytes(in, raw, u8(in) % sizeof raw);
        size_t n = 0;
        if (k && raw[0] == '/') n = (size_t)snprintf(out, cap, "%s", dir);
        if (n + k > cap) k = cap - n;
        memcpy(out + n, raw, k); /* may hold NULs and lack a terminator: the atom's size rules */
        return n + k;
    }
    }
}

/* Known bug (tests/fuzz/RESULTS.md, finding 2): the plugin's clampf() passes NaN, so a
 * NaN gain, velocity sensitivity, tune or length control makes the output NaN (and a NaN
 * tune a UBSan float-cast error). NF_FUZZ_ALLOW_KNOWN=1 replaces NaN controls by 0 so
 * that fuzzing can go on past it; without it, it is a finding. */
static void step_around_known(float *ctl)
{
    for (int i = 0; i < 10; i++)
        if (isnan(ctl[i])) ctl[i] = 0;
}

/* ---- state retrieve ---- */
typedef struct {
    LV2_URID key, type;
    uint32_t size;
    uint8_t body[512] __attribute__((aligned(8)));
} state_item;
static state_item items[8];
static int n_items;

static const void *retrieve(LV2_State_Handle h, uint32_t key, size_t *size, uint32_t *type, uint32_t *flags)
{
    (void)h;
    for (int i = 0; i < n_items; i++)
        if (items[i].key == key) {
            *size = items[i].size;
            *type = items[i].type;
            *flags = LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE;
            return items[i].body;
        }
    return NULL;
}

/* ---- the control sequence ---- */
static uint64_t seq_buf[1024]; /* 8 KB, 8-byte aligned */

static void seq_clear(LV2_Atom_Sequence *s)
{
    s->atom.type = URID(LV2_ATOM__Sequence);
    s->atom.size = sizeof(LV2_Atom_Sequence_Body);
    s->body.unit = 0;
    s->body.pad = 0;
}

/* Append an event with the given body; returns 0 if it does not fit. */
static int seq_add(LV2_Atom_Sequence *s, int64_t frames, uint32_t type, const void *body, uint32_t size)
{
    uint32_t need = (uint32_t)sizeof(LV2_Atom_Event) + lv2_atom_pad_size(size);
    if (sizeof(LV2_Atom) + s->atom.size + need > sizeof seq_buf) return 0;
    LV2_Atom_Event *ev = (LV2_Atom_Event *)((uint8_t *)LV2_ATOM_BODY(&s->atom) + lv2_atom_pad_size(s->atom.size));
    ev->time.frames = frames;
    ev->body.type = type;
    ev->body.size = size;
    memcpy(ev + 1, body, size);
    s->atom.size += need;
    return 1;
}

/* A patch object: otype Set/Get/other, up to 3 properties with keys and values of any
 * type; path and string values from pick_path. */
static uint32_t make_object(input *in, uint8_t *buf, uint32_t cap, uint32_t *otype_out)
{
    static const char *otypes[] = {LV2_PATCH__Set, LV2_PATCH__Get, LV2_PATCH__Put, NF_URI "#model"};
    static const char *keys[] = {LV2_PATCH__property, LV2_PATCH__value, LV2_PATCH__subject, NF_URI "#model"};
    static const char *vtypes[] = {LV2_ATOM__URID, LV2_ATOM__Path, LV2_ATOM__String, LV2_ATOM__Int,
                                   LV2_ATOM__Float, LV2_ATOM__Tuple, LV2_ATOM__Object, LV2_ATOM__Bool};
    LV2_Atom_Object_Body *ob = (LV2_Atom_Object_Body *)buf;
    ob->id = 0;
    ob->otype = URID(otypes[u8(in) & 3]);
    *otype_out = URID(LV2_ATOM__Object);
    uint32_t size = sizeof *ob;
    int np = u8(in) % 4;
    for (int k = 0; k < np; k++) {
        LV2_Atom_Property_Body *pb = (LV2_Atom_Property_Body *)(buf + size);
        if (size + sizeof *pb + 4200 > cap) break;
        pb->key = URID(keys[u8(in) & 3]);
        pb->context = 0;
        uint8_t t = u8(in);
        pb->value.type = URID(vtypes[t & 7]);
        uint8_t *vb = (uint8_t *)(pb + 1);
        uint32_t vs;
        if (pb->value.type == URID(LV2_ATOM__URID)) {
            uint32_t v = (t & 8) ? URID(NF_URI "#model") : (uint32_t)u8(in);
            memcpy(vb, &v, 4);
            vs = 4;
        } else if (pb->value.type == URID(LV2_ATOM__Path) || pb->value.type == URID(LV2_ATOM__String)) {
            vs = (uint32_t)pick_path(in, (char *)vb, 4100);
            if (t & 8) vb[vs++] = 0; /* with or without the terminator */
        } else {
            vs = (uint32_t)bytes(in, vb, u8(in) % 16);
        }
        pb->value.size = vs;
        size += (uint32_t)sizeof *pb + lv2_atom_pad_size(vs);
    }
    return size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        setup();
        allow_known = getenv("NF_FUZZ_ALLOW_KNOWN") && !strcmp(getenv("NF_FUZZ_ALLOW_KNOWN"), "1");
    }
    input in = {data, size};
    static const double rates[4] = {8000, 44100, 96000, 384000};
    double rate = rates[u8(&in) & 3];
    uint8_t flags = u8(&in);
    /* the garbage file: model-like start, then input bytes */
    uint8_t junk[256];
    write_file(garbage_path, junk, bytes(&in, junk, u8(&in) % sizeof junk));

    LV2_Feature f_map = {LV2_URID__map, &map}, f_sched = {LV2_WORKER__schedule, &schedule},
                f_log = {LV2_LOG__log, &logger};
    const LV2_Feature *features[] = {&f_map, &f_sched, &f_log, NULL};
    const LV2_Descriptor *d = lv2_descriptor(0);
    if (!d || lv2_descriptor(1) != NULL) abort();
    const LV2_Worker_Interface *wi = d->extension_data(LV2_WORKER__interface);
    const LV2_State_Interface *si = d->extension_data(LV2_STATE__interface);
    LV2_Handle h = d->instantiate(d, rate, "/nonexistent/bundle/", features);
    if (!h) abort();
    n_req = n_rsp = 0;

    float ctl[16];
    for (int i = 0; i < 10; i++) ctl[i] = f32(&in);
    if (allow_known) step_around_known(ctl);
    enum { NFRAMES = 1024 };
    static float outL[NFRAMES], outR[NFRAMES];
    static uint64_t notify_buf[512];
    LV2_Atom_Sequence *seq = (LV2_Atom_Sequence *)seq_buf;
    seq_clear(seq);
    d->connect_port(h, 0, seq);
    d->connect_port(h, 1, notify_buf);
    d->connect_port(h, 2, outL);
    d->connect_port(h, 3, outR);
    for (uint32_t i = 0; i < 10; i++) d->connect_port(h, 4 + i, (flags & 1) && i == (flags >> 4) % 10 ? NULL : &ctl[i]);
    d->activate(h);

    /* state restore */
    if (flags & 2) {
        static const char *keys[] = {"#model", "#takes", "#seed", "#steps", "#guidance", "#variation", "#pool", "#x"};
        static const char *types[] = {LV2_ATOM__Path, LV2_ATOM__String, LV2_ATOM__Long, LV2_ATOM__Int,
                                      LV2_ATOM__Float, LV2_ATOM__Double, LV2_ATOM__Bool, LV2_ATOM__URID};
        n_items = u8(&in) % 8;
        for (int i = 0; i < n_items; i++) {
            state_item *it = &items[i];
            char key[128];
            uint8_t kb = u8(&in);
            snprintf(key, sizeof key, "%s%s", NF_URI, keys[kb & 7]);
            it->key = URID(key);
            it->type = URID(types[u8(&in) & 7]);
            if ((kb & 7) == 0 && (kb & 8)) {
                it->size = (uint32_t)pick_path(&in, (char *)it->body, sizeof it->body - 1);
                it->body[it->size] = 0;
                it->size += (kb >> 4) & 1;
            } else if ((kb & 7) == 1 && (kb & 8)) {
                /* a takes index: the input's text */
                char text[512];
                size_t k = bytes(&in, text, u8(&in) * 2u);
                write_file(takes_path, text, k);
                it->size = (uint32_t)snprintf((char *)it->body, sizeof it->body, "%s", takes_path) + 1;
            } else {
                it->size = (uint32_t)bytes(&in, it->body, u8(&in) % 12);
            }
        }
        (void)si->restore(h, retrieve, NULL, 0, features);
        n_items = 0;
    }

    int cycles = 1 + u8(&in) % 8;
    for (int c = 0; c < cycles; c++) {
        uint32_t n = 1 + (uint32_t)(u8(&in) | (u8(&in) << 8)) % NFRAMES;
        seq_clear(seq);
        int nev = u8(&in) % 5;
        int64_t t = 0;
        for (int e = 0; e < nev; e++) {
            t += u8(&in) % 300;
            uint8_t kind = u8(&in);
            if ((kind & 3) == 0 || (kind & 3) == 3) {
                uint8_t midi[3] = {(kind & 3) == 0 ? 0x99 : u8(&in), u8(&in), u8(&in)};
                if ((kind & 3) == 0) midi[1] = 35 + midi[1] % 47;
                seq_add(seq, t, URID(LV2_MIDI__MidiEvent), midi, (kind & 4) ? 3 : (uint32_t)(kind >> 6));
            } else {
                static uint8_t obj[4096 * 4] __attribute__((aligned(8)));
                uint32_t ot;
                uint32_t os = make_object(&in, obj, sizeof obj, &ot);
                seq_add(seq, t, (kind & 3) == 1 ? ot : URID(LV2_ATOM__Blank), obj, os);
            }
        }
        ((LV2_Atom *)notify_buf)->size = sizeof notify_buf - sizeof(LV2_Atom);
        ((LV2_Atom *)notify_buf)->type = 0;
        for (int i = 0; i < 10; i++)
            if (u8(&in) & 1) ctl[i] = f32(&in);
        if (allow_known) step_around_known(ctl);
        d->run(h, n);
        for (uint32_t i = 0; i < n; i++)
            if (!isfinite(outL[i]) || !isfinite(outR[i])) abort();
        run_worker(wi, h);
        /* The model file deleted or replaced under the loaded model. */
        uint8_t ev = u8(&in);
        if ((ev & 7) == 1) unlink(model_path);
        if ((ev & 7) == 2) write_file(model_path, junk, sizeof junk / 2);
        if ((ev & 7) == 1 || (ev & 7) == 2) model_damaged = 1;
    }
    /* Like a host that stops its worker before cleanup: finish the queued work (frees of
     * retired banks and takes among it) and deliver the responses. */
    for (int round = 0; round < 32 && (n_req || n_rsp); round++) run_worker(wi, h);
    if (d->deactivate) d->deactivate(h);
    d->cleanup(h);
    /* The next input starts with the model in place. */
    if (model_damaged) make_model();
    model_damaged = 0;
    return 0;
}
