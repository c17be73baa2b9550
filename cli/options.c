/* The option parser shared by every command (see options.h). */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int batch_quiet;
static char batch_context[512];

void nf_opt_set_batch_context(int quiet_usage, const char *context)
{
    batch_quiet = quiet_usage;
    snprintf(batch_context, sizeof batch_context, "%s", context ? context : "");
}

const char *nf_opt_context(void) { return batch_context; }

static const char *default_metavar(const nf_opt *o)
{
    if (o->metavar) return o->metavar;
    switch (o->type) {
    case NF_OPT_INT:
    case NF_OPT_I64: return "N";
    case NF_OPT_U64: return "SEED";
    case NF_OPT_FLOAT:
    case NF_OPT_DOUBLE: return "X";
    case NF_OPT_STRING: return "VALUE";
    case NF_OPT_CHOICE: return o->choices;
    case NF_OPT_FLAG: break;
    }
    return "";
}

/* The n-th choice of a '|'-separated list, copied into buf. */
static const char *choice_at(const char *choices, int n, char *buf, size_t size)
{
    const char *p = choices;
    for (int i = 0; i < n && p; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p) return NULL;
    size_t len = strcspn(p, "|");
    if (len >= size) len = size - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

static int choice_index(const char *choices, const char *s)
{
    const char *p = choices;
    for (int i = 0; p; i++) {
        size_t len = strcspn(p, "|");
        if (len == strlen(s) && !strncmp(p, s, len)) return i;
        p = strchr(p, '|');
        if (p) p++;
    }
    return -1;
}

static void format_default(const nf_opt *o, char *buf, size_t size)
{
    buf[0] = '\0';
    if (!o->value) return;
    switch (o->type) {
    case NF_OPT_FLAG: break;
    case NF_OPT_INT: snprintf(buf, size, "%d", *(const int *)o->value); break;
    case NF_OPT_I64: snprintf(buf, size, "%lld", *(const long long *)o->value); break;
    case NF_OPT_U64: snprintf(buf, size, "%" PRIu64, *(const uint64_t *)o->value); break;
    case NF_OPT_FLOAT: snprintf(buf, size, "%g", (double)*(const float *)o->value); break;
    case NF_OPT_DOUBLE: snprintf(buf, size, "%g", *(const double *)o->value); break;
    case NF_OPT_STRING: {
        const char *s = *(const char *const *)o->value;
        if (s) snprintf(buf, size, "%s", s);
        break;
    }
    case NF_OPT_CHOICE: {
        char c[128];
        if (choice_at(o->choices, *(const int *)o->value, c, sizeof c)) snprintf(buf, size, "%s", c);
        break;
    }
    }
}

void nf_opt_print_usage(const nf_opt_spec *spec, FILE *f)
{
    fprintf(f, "Usage: noisefloor %s %s\n", spec->command, spec->usage ? spec->usage : "[options]");
    fprintf(f, "Try 'noisefloor %s --help' for the options.\n", spec->command);
}

void nf_opt_print_help(const nf_opt_spec *spec, FILE *f)
{
    fprintf(f, "Usage: noisefloor %s %s\n", spec->command, spec->usage ? spec->usage : "[options]");
    if (spec->description) fprintf(f, "\n%s\n", spec->description);
    fprintf(f, "\nOptions:\n");
    for (const nf_opt *o = spec->opts; o && o->name; o++) {
        char left[160], def[160];
        int n = snprintf(left, sizeof left, "  %c%c%s--%s", o->short_name ? '-' : ' ',
                         o->short_name ? o->short_name : ' ', o->short_name ? ", " : "  ", o->name);
        if (o->type != NF_OPT_FLAG && n > 0 && (size_t)n < sizeof left)
            snprintf(left + n, sizeof left - (size_t)n, " %s", default_metavar(o));
        format_default(o, def, sizeof def);
        if (strlen(left) > 28)
            fprintf(f, "%s\n  %-28s%s", left, "", o->help ? o->help : "");
        else
            fprintf(f, "%-30s%s", left, o->help ? o->help : "");
        if (def[0]) fprintf(f, " [default: %s]", def);
        if (o->min != 0 || o->max != 0) {
            if (o->type == NF_OPT_INT || o->type == NF_OPT_I64 || o->type == NF_OPT_U64)
                fprintf(f, " (%.0f..%.0f)", o->min, o->max);
            else
                fprintf(f, " (%g..%g)", o->min, o->max);
        }
        fputc('\n', f);
    }
    fprintf(f, "  -h, --help                  show this help\n");
}

static void usage_error(const nf_opt_spec *spec, FILE *err, int show_usage, const char *fmt, const char *a,
                        const char *b)
{
    fprintf(err, "%snoisefloor %s: ", batch_context, spec->command);
    fprintf(err, fmt, a, b);
    fputc('\n', err);
    if (show_usage && !batch_quiet) nf_opt_print_usage(spec, err);
}

static int in_range(const nf_opt *o, double v)
{
    if (o->min == 0 && o->max == 0) return 1;
    return v >= o->min && v <= o->max;
}

/* Store `text` into the option's destination. Returns 0, or -1 after one line on err. */
static int set_value(const nf_opt_spec *spec, const nf_opt *o, const char *text, FILE *err)
{
    char *end = NULL;
    char dashed[160];
    snprintf(dashed, sizeof dashed, "--%s", o->name);
    errno = 0;
    switch (o->type) {
    case NF_OPT_FLAG: *(int *)o->value = 1; break;
    case NF_OPT_INT:
    case NF_OPT_I64: {
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno) {
            usage_error(spec, err, 0, "%s: '%s' is not an integer", dashed, text);
            return -1;
        }
        if (!in_range(o, (double)v) || (o->type == NF_OPT_INT && (v < -2147483647LL || v > 2147483647LL))) {
            char r[96];
            snprintf(r, sizeof r, "%s is out of range [%.0f, %.0f]", text, o->min, o->max);
            usage_error(spec, err, 0, "%s: %s", dashed, r);
            return -1;
        }
        if (o->type == NF_OPT_INT)
            *(int *)o->value = (int)v;
        else
            *(long long *)o->value = v;
        break;
    }
    case NF_OPT_U64: {
        if (!*text || *text == '-') {
            usage_error(spec, err, 0, "%s: '%s' is not a non-negative integer", dashed, text);
            return -1;
        }
        unsigned long long v = strtoull(text, &end, 0);
        if (*end || errno) {
            usage_error(spec, err, 0, "%s: '%s' is not a non-negative integer", dashed, text);
            return -1;
        }
        *(uint64_t *)o->value = (uint64_t)v;
        break;
    }
    case NF_OPT_FLOAT:
    case NF_OPT_DOUBLE: {
        double v = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v)) {
            usage_error(spec, err, 0, "%s: '%s' is not a finite number", dashed, text);
            return -1;
        }
        if (!in_range(o, v)) {
            char r[96];
            snprintf(r, sizeof r, "%s is out of range [%g, %g]", text, o->min, o->max);
            usage_error(spec, err, 0, "%s: %s", dashed, r);
            return -1;
        }
        if (o->type == NF_OPT_FLOAT)
            *(float *)o->value = (float)v;
        else
            *(double *)o->value = v;
        break;
    }
    case NF_OPT_STRING:
        if (!*text) {
            usage_error(spec, err, 0, "%s: empty value%s", dashed, "");
            return -1;
        }
        *(const char **)o->value = text;
        break;
    case NF_OPT_CHOICE: {
        int i = choice_index(o->choices, text);
        if (i < 0) {
            char r[256];
            snprintf(r, sizeof r, "'%s' is not one of %s", text, o->choices);
            usage_error(spec, err, 0, "%s: %s", dashed, r);
            return -1;
        }
        *(int *)o->value = i;
        break;
    }
    }
    if (o->seen) *o->seen = 1;
    return 0;
}

int nf_opt_parse(const nf_opt_spec *spec, int argc, char **argv, char **pos, int max_pos, int *npos, FILE *err)
{
    int n = 0, only_positional = 0;
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (n >= max_pos || (spec->max_positional >= 0 && n >= spec->max_positional)) {
                usage_error(spec, err, 1, "unexpected argument '%s'%s", a, "");
                return 2;
            }
            pos[n++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_positional = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            nf_opt_print_help(spec, stdout);
            return 0;
        }
        const nf_opt *o = NULL;
        const char *inline_value = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            size_t len = strcspn(name, "=");
            if (name[len] == '=') inline_value = name + len + 1;
            for (const nf_opt *c = spec->opts; c && c->name; c++)
                if (strlen(c->name) == len && !strncmp(c->name, name, len)) o = c;
        } else {
            for (const nf_opt *c = spec->opts; c && c->name; c++)
                if (c->short_name && c->short_name == a[1]) o = c;
            if (o && a[2]) {
                if (o->type == NF_OPT_FLAG) o = NULL; /* no bundling of short flags: keep it simple */
                else inline_value = a + 2;
            }
        }
        if (!o) {
            /* A negative number where a value was expected is caught below; here the
             * word is an option we do not know. */
            usage_error(spec, err, 1, "unknown option '%s'%s", a, "");
            return 2;
        }
        if (o->type == NF_OPT_FLAG) {
            if (inline_value) {
                usage_error(spec, err, 0, "--%s takes no value%s", o->name, "");
                return 2;
            }
            if (set_value(spec, o, "", err)) return 2;
            continue;
        }
        const char *v = inline_value;
        if (!v) {
            if (i + 1 >= argc) {
                usage_error(spec, err, 0, "--%s needs a value (%s)", o->name, default_metavar(o));
                return 2;
            }
            v = argv[++i];
        }
        if (set_value(spec, o, v, err)) return 2;
    }
    if (n < spec->min_positional) {
        usage_error(spec, err, 1, "missing argument (usage: %s)%s", spec->usage ? spec->usage : "", "");
        return 2;
    }
    *npos = n;
    return -1;
}

int nf_opt_split_line(char *line, char **argv, int max_words, int *argc, char *err_msg, size_t err_size)
{
    int n = 0;
    char *r = line, *w = line;
    *argc = 0;
    for (;;) {
        while (*r == ' ' || *r == '\t' || *r == '\r' || *r == '\n') r++;
        if (!*r || *r == '#') break;
        if (n >= max_words) {
            snprintf(err_msg, err_size, "too many words (at most %d)", max_words);
            return -1;
        }
        argv[n++] = w;
        while (*r && *r != ' ' && *r != '\t' && *r != '\r' && *r != '\n') {
            if (*r == '\'') {
                r++;
                while (*r && *r != '\'') *w++ = *r++;
                if (*r != '\'') {
                    snprintf(err_msg, err_size, "unterminated ' quote");
                    return -1;
                }
                r++;
            } else if (*r == '"') {
                r++;
                while (*r && *r != '"') {
                    if (*r == '\\' && (r[1] == '"' || r[1] == '\\')) r++;
                    *w++ = *r++;
                }
                if (*r != '"') {
                    snprintf(err_msg, err_size, "unterminated \" quote");
                    return -1;
                }
                r++;
            } else if (*r == '\\' && r[1]) {
                r++;
                *w++ = *r++;
            } else {
                *w++ = *r++;
            }
        }
        /* The terminator may overwrite the blank we stopped on: r has moved past w. */
        int at_end = !*r;
        *w++ = '\0';
        if (at_end) break;
        r++;
    }
    *argc = n;
    return 0;
}

static int parse_bound(const char *s, size_t len, double *v, int *sec)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    *sec = 0;
    if (buf[len - 1] == 's') {
        *sec = 1;
        buf[--len] = '\0';
        if (len == 0) return -1;
    }
    char *end;
    errno = 0;
    *v = strtod(buf, &end);
    if (*end || errno || !isfinite(*v) || *v < 0) return -1;
    return 0;
}

int nf_opt_parse_region(const char *s, double *a, int *a_sec, double *b, int *b_sec)
{
    const char *colon = strchr(s, ':');
    if (!colon || strchr(colon + 1, ':')) return -1;
    if (parse_bound(s, (size_t)(colon - s), a, a_sec)) return -1;
    if (parse_bound(colon + 1, strlen(colon + 1), b, b_sec)) return -1;
    return 0;
}
