/*
 * rules/expr — the CEL-subset compiler (a Pratt parser over a hand-written
 * lexer) and the tree-walking evaluator.
 *
 * Compilation builds the AST in growable arrays, then packs nodes, list
 * children, compiled regexes and the string pool into ONE allocation (the
 * cs_expr). Variable chains such as `event.properties.feature` are folded at
 * compile time into a single PATH node carrying the dotted string, so a
 * condition costs one lookup callback per variable. Evaluation walks the
 * packed tree recursively; the tree's depth is bounded at compile time, and
 * intermediate strings/lists live in the caller's cs_expr_env, so evaluation
 * never touches the heap.
 *
 * Errors follow CEL: runtime errors are values (CS_V_ERROR) that propagate
 * through operators, except that `&&`/`||` absorb an error when the other
 * side alone decides the result (false && error == false), and exists()/all()
 * likewise. Compile errors carry the 1-based line:column of the token.
 */
#include "rules/expr.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Tree depth bound (evaluation recursion); the parser's own recursion is
 * bounded by CS_EXPR_MAX_DEPTH. */
#define MAX_TREE_DEPTH 160

/* ================================================================ the AST */

enum op {
    N_LIT,      /* lit */
    N_PATH,     /* str/len: dotted path */
    N_LOOPVAR,  /* slot */
    N_LIST,     /* kids[a .. a+b) */
    N_SELECT,   /* a.field(str) on a computed map */
    N_INDEX,    /* a[b] */
    N_NOT, N_NEG,
    N_AND, N_OR, N_COND,
    N_EQ, N_NE, N_LT, N_LE, N_GT, N_GE, N_IN,
    N_ADD, N_SUB, N_MUL, N_DIV, N_MOD,
    N_HAS,      /* a: PATH or SELECT */
    N_SIZE, N_STARTS, N_ENDS, N_CONTAINS,
    N_MATCHES,  /* a: string, slot: regex index */
    N_EXISTS, N_ALL, N_EXISTS_ONE, /* a: range, b: predicate, slot */
    N_CONV,     /* a, slot: target cs_vtype */
};

struct node {
    uint8_t  op;
    uint8_t  slot;
    uint16_t depth;
    uint32_t pos;  /* byte offset of the token in the source */
    int32_t  a, b, c;
    uint32_t str, len; /* string pool offset/length (PATH, SELECT) */
    cs_value lit;
};

struct cs_expr {
    const struct node *nodes;
    const int32_t     *kids;
    regex_t           *re;
    size_t             nre;
    const char        *pool;
    const char        *src;
    int32_t            root;
    size_t             size;
};

/* ============================================================== the lexer */

enum tk {
    T_EOF, T_INT, T_DOUBLE, T_STR, T_IDENT, T_TRUE, T_FALSE, T_NULL, T_IN,
    T_LP, T_RP, T_LB, T_RB, T_LC, T_RC, T_DOT, T_COMMA, T_Q, T_COLON,
    T_NOT, T_MINUS, T_PLUS, T_STAR, T_SLASH, T_PCT,
    T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE, T_AND, T_OR,
};

struct tok {
    enum tk  k;
    size_t   pos, end;
    int64_t  i;
    double   d;
    int      big; /* the int literal 9223372036854775808 (valid only negated) */
    uint32_t soff, slen;
};

struct cc {
    const char *src;
    size_t      len;
    struct tok  t;
    struct node *nodes;
    size_t       nn, ncap;
    int32_t     *kids;
    size_t       nk, kcap;
    char        *pool;
    size_t       np, pcap;
    regex_t     *re;
    size_t       nre, recap;
    const char *const *roots;
    const char *loopname[CS_EXPR_MAX_LOOPS];
    size_t      looplen[CS_EXPR_MAX_LOOPS];
    int         nloops;
    int         depth;
    int         bigs;       /* un-negated 2^63 literals seen */
    size_t      bigpos;
    cs_expr_error *err;
    jmp_buf     jb;
};

static void linecol(const char *src, size_t pos, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < pos && src[i]; i++) {
        if (src[i] == '\n') l++, c = 1;
        else if (((unsigned char)src[i] & 0xC0) != 0x80) c++;
    }
    *line = l, *col = c;
}

__attribute__((noreturn, format(printf, 3, 4))) static void fail(struct cc *c, size_t pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err->msg, sizeof c->err->msg, fmt, ap);
    va_end(ap);
    linecol(c->src, pos, &c->err->line, &c->err->col);
    longjmp(c->jb, 1);
}

static uint32_t pool_add(struct cc *c, const char *p, size_t n)
{
    if (c->np + n + 1 > c->pcap) {
        c->pcap = (c->np + n + 1) * 2;
        c->pool = cs_realloc(c->pool, c->pcap);
    }
    uint32_t off = (uint32_t)c->np;
    memcpy(c->pool + c->np, p, n);
    c->pool[c->np + n] = 0;
    c->np += n + 1;
    return off;
}

static void pool_putc(struct cc *c, char ch)
{
    if (c->np + 2 > c->pcap) {
        c->pcap = (c->np + 2) * 2;
        c->pool = cs_realloc(c->pool, c->pcap);
    }
    c->pool[c->np++] = ch;
}

static void put_utf8(struct cc *c, uint32_t cp, size_t pos)
{
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail(c, pos, "invalid code point in escape");
    if (cp < 0x80) {
        pool_putc(c, (char)cp);
    } else if (cp < 0x800) {
        pool_putc(c, (char)(0xC0 | cp >> 6)), pool_putc(c, (char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        pool_putc(c, (char)(0xE0 | cp >> 12)), pool_putc(c, (char)(0x80 | ((cp >> 6) & 0x3F)));
        pool_putc(c, (char)(0x80 | (cp & 0x3F)));
    } else {
        pool_putc(c, (char)(0xF0 | cp >> 18)), pool_putc(c, (char)(0x80 | ((cp >> 12) & 0x3F)));
        pool_putc(c, (char)(0x80 | ((cp >> 6) & 0x3F))), pool_putc(c, (char)(0x80 | (cp & 0x3F)));
    }
}

static int hexd(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

static int is_ident_start(int ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_'; }
static int is_digit(int ch) { return ch >= '0' && ch <= '9'; }

/* Lex a string literal starting at p (at the quote, after any r prefix). */
static void lex_string(struct cc *c, size_t p, int raw, struct tok *t)
{
    const char *s = c->src;
    char q = s[p];
    int triple = p + 2 < c->len && s[p + 1] == q && s[p + 2] == q;
    size_t i = p + (triple ? 3 : 1);
    size_t start = c->np;
    for (;;) {
        if (i >= c->len) fail(c, t->pos, "unterminated string literal");
        char ch = s[i];
        if (ch == q && (!triple || (i + 2 < c->len && s[i + 1] == q && s[i + 2] == q))) {
            i += triple ? 3 : 1;
            break;
        }
        if ((ch == '\n' || ch == '\r') && !triple) fail(c, i, "newline in string literal");
        if (ch != '\\' || raw) {
            pool_putc(c, ch);
            i++;
            continue;
        }
        size_t epos = i;
        if (++i >= c->len) fail(c, epos, "unterminated string literal");
        ch = s[i++];
        switch (ch) {
        case 'a': pool_putc(c, '\a'); break;
        case 'b': pool_putc(c, '\b'); break;
        case 'f': pool_putc(c, '\f'); break;
        case 'n': pool_putc(c, '\n'); break;
        case 'r': pool_putc(c, '\r'); break;
        case 't': pool_putc(c, '\t'); break;
        case 'v': pool_putc(c, '\v'); break;
        case '\\': case '\'': case '"': case '`': case '?': pool_putc(c, ch); break;
        case 'x': case 'X': case 'u': case 'U': {
            int n = (ch == 'x' || ch == 'X') ? 2 : ch == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < n; k++) {
                int h = i < c->len ? hexd((unsigned char)s[i]) : -1;
                if (h < 0) fail(c, epos, "invalid \\%c escape: expected %d hex digits", ch, n);
                cp = cp * 16 + (uint32_t)h, i++;
            }
            put_utf8(c, cp, epos);
            break;
        }
        default:
            if (ch >= '0' && ch <= '3' && i + 1 < c->len && s[i] >= '0' && s[i] <= '7' && s[i + 1] >= '0' &&
                s[i + 1] <= '7') {
                uint32_t cp = (uint32_t)((ch - '0') * 64 + (s[i] - '0') * 8 + (s[i + 1] - '0'));
                i += 2;
                put_utf8(c, cp, epos);
                break;
            }
            fail(c, epos, "invalid escape sequence \\%c", ch);
        }
    }
    pool_putc(c, 0);
    t->k = T_STR;
    t->soff = (uint32_t)start;
    t->slen = (uint32_t)(c->np - start - 1);
    t->end = i;
}

static void lex_number(struct cc *c, size_t p, struct tok *t)
{
    const char *s = c->src;
    size_t i = p;
    if (s[i] == '0' && i + 1 < c->len && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
        i += 2;
        uint64_t v = 0;
        size_t d0 = i;
        while (i < c->len && hexd((unsigned char)s[i]) >= 0) {
            if (v > (UINT64_MAX >> 4)) fail(c, p, "integer literal out of range");
            v = v * 16 + (uint64_t)hexd((unsigned char)s[i++]);
        }
        if (i == d0) fail(c, p, "invalid hex literal");
        if (v > (uint64_t)INT64_MAX + 1) fail(c, p, "integer literal out of range");
        t->k = T_INT, t->i = (int64_t)(v & (uint64_t)INT64_MAX), t->big = v == (uint64_t)INT64_MAX + 1;
        goto suffix;
    }
    while (i < c->len && is_digit((unsigned char)s[i])) i++;
    int isdbl = 0;
    if (i + 1 < c->len && s[i] == '.' && is_digit((unsigned char)s[i + 1])) {
        isdbl = 1, i++;
        while (i < c->len && is_digit((unsigned char)s[i])) i++;
    }
    if (i < c->len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < c->len && (s[j] == '+' || s[j] == '-')) j++;
        if (j < c->len && is_digit((unsigned char)s[j])) {
            isdbl = 1, i = j;
            while (i < c->len && is_digit((unsigned char)s[i])) i++;
        }
    }
    char buf[128];
    if (i - p >= sizeof buf) fail(c, p, "numeric literal too long");
    memcpy(buf, s + p, i - p);
    buf[i - p] = 0;
    if (isdbl) {
        t->k = T_DOUBLE, t->d = strtod(buf, NULL);
    } else {
        uint64_t v = 0;
        for (size_t k = 0; buf[k]; k++) {
            if (v > (UINT64_MAX - 9) / 10) fail(c, p, "integer literal out of range");
            v = v * 10 + (uint64_t)(buf[k] - '0');
        }
        if (v > (uint64_t)INT64_MAX + 1) fail(c, p, "integer literal out of range");
        t->k = T_INT, t->i = (int64_t)(v & (uint64_t)INT64_MAX), t->big = v == (uint64_t)INT64_MAX + 1;
    }
suffix:
    if (i < c->len && (s[i] == 'u' || s[i] == 'U')) fail(c, p, "unsigned integers (uint) are not supported");
    if (i < c->len && (is_ident_start((unsigned char)s[i]) || is_digit((unsigned char)s[i])))
        fail(c, i, "unexpected character after number");
    t->end = i;
}

/* Lex the token at byte offset p into *t. */
static void lex_at(struct cc *c, size_t p, struct tok *t)
{
    const char *s = c->src;
    for (;;) { /* blanks and // comments */
        while (p < c->len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r' || s[p] == '\f')) p++;
        if (p + 1 < c->len && s[p] == '/' && s[p + 1] == '/') {
            while (p < c->len && s[p] != '\n') p++;
            continue;
        }
        break;
    }
    memset(t, 0, sizeof *t);
    t->pos = p;
    if (p >= c->len) {
        t->k = T_EOF, t->end = p;
        return;
    }
    unsigned char ch = (unsigned char)s[p];
    if (is_digit(ch) || (ch == '.' && p + 1 < c->len && is_digit((unsigned char)s[p + 1]))) {
        lex_number(c, p, t);
        return;
    }
    if (ch == '"' || ch == '\'') {
        lex_string(c, p, 0, t);
        return;
    }
    if (is_ident_start(ch)) {
        size_t i = p;
        while (i < c->len && (is_ident_start((unsigned char)s[i]) || is_digit((unsigned char)s[i]))) i++;
        size_t n = i - p;
        if (n == 1 && (ch == 'r' || ch == 'R') && i < c->len && (s[i] == '"' || s[i] == '\'')) {
            lex_string(c, i, 1, t);
            t->pos = p;
            return;
        }
        if (n == 1 && (ch == 'b' || ch == 'B') && i < c->len && (s[i] == '"' || s[i] == '\''))
            fail(c, p, "bytes literals are not supported");
        t->end = i;
        t->k = T_IDENT;
        if (n == 4 && memcmp(s + p, "true", 4) == 0) t->k = T_TRUE;
        else if (n == 5 && memcmp(s + p, "false", 5) == 0) t->k = T_FALSE;
        else if (n == 4 && memcmp(s + p, "null", 4) == 0) t->k = T_NULL;
        else if (n == 2 && memcmp(s + p, "in", 2) == 0) t->k = T_IN;
        return;
    }
    static const struct { const char *s; enum tk k; } ops[] = {
        {"==", T_EQ}, {"!=", T_NE}, {"<=", T_LE}, {">=", T_GE}, {"&&", T_AND}, {"||", T_OR},
        {"(", T_LP}, {")", T_RP}, {"[", T_LB}, {"]", T_RB}, {"{", T_LC}, {"}", T_RC}, {".", T_DOT},
        {",", T_COMMA}, {"?", T_Q}, {":", T_COLON}, {"!", T_NOT}, {"-", T_MINUS}, {"+", T_PLUS},
        {"*", T_STAR}, {"/", T_SLASH}, {"%", T_PCT}, {"<", T_LT}, {">", T_GT},
    };
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        size_t n = strlen(ops[k].s);
        if (p + n <= c->len && memcmp(s + p, ops[k].s, n) == 0) {
            t->k = ops[k].k, t->end = p + n;
            return;
        }
    }
    if (ch == '=') fail(c, p, "unexpected '=' (did you mean '=='?)");
    if (ch == '&' || ch == '|') fail(c, p, "unexpected '%c' (did you mean '%c%c'?)", ch, ch, ch);
    if (ch >= 0x20 && ch < 0x7f) fail(c, p, "unexpected character '%c'", ch);
    fail(c, p, "unexpected character (byte 0x%02x)", ch);
}

static void next(struct cc *c) { lex_at(c, c->t.end, &c->t); }

static void peek(struct cc *c, const struct tok *after, struct tok *out) { lex_at(c, after->end, out); }

static const char *tkname(enum tk k)
{
    static const char *const names[] = {
        "end of expression", "integer", "number", "string", "identifier", "true", "false", "null", "in",
        "'('", "')'", "'['", "']'", "'{'", "'}'", "'.'", "','", "'?'", "':'", "'!'", "'-'", "'+'", "'*'",
        "'/'", "'%'", "'=='", "'!='", "'<'", "'<='", "'>'", "'>='", "'&&'", "'||'",
    };
    return names[k];
}

static void expect(struct cc *c, enum tk k)
{
    if (c->t.k != k) fail(c, c->t.pos, "expected %s, found %s", tkname(k), tkname(c->t.k));
    next(c);
}

/* ============================================================= the parser */

static int32_t mk(struct cc *c, enum op op, size_t pos, int32_t a, int32_t b, int32_t d3)
{
    if (c->nn >= CS_EXPR_MAX_NODES) fail(c, pos, "expression too large (more than %d nodes)", CS_EXPR_MAX_NODES);
    if (c->nn == c->ncap) {
        c->ncap = c->ncap ? c->ncap * 2 : 32;
        c->nodes = cs_realloc(c->nodes, c->ncap * sizeof *c->nodes);
    }
    struct node *n = &c->nodes[c->nn];
    memset(n, 0, sizeof *n);
    n->op = (uint8_t)op, n->pos = (uint32_t)pos, n->a = a, n->b = b, n->c = d3;
    int depth = 0;
    int32_t ch[3] = {a, b, d3};
    for (int k = 0; k < 3; k++)
        if (ch[k] >= 0 && c->nodes[ch[k]].depth > depth) depth = c->nodes[ch[k]].depth;
    if (op == N_LIST)
        for (int32_t k = 0; k < b; k++)
            if (c->nodes[c->kids[a + k]].depth > depth) depth = c->nodes[c->kids[a + k]].depth;
    if (depth + 1 > MAX_TREE_DEPTH) fail(c, pos, "expression nested too deeply (more than %d levels)", MAX_TREE_DEPTH);
    n->depth = (uint16_t)(depth + 1);
    return (int32_t)c->nn++;
}

static int32_t mk_lit(struct cc *c, size_t pos, cs_value v)
{
    int32_t n = mk(c, N_LIT, pos, -1, -1, -1);
    c->nodes[n].lit = v;
    return n;
}

static void enter(struct cc *c, size_t pos)
{
    if (++c->depth > CS_EXPR_MAX_DEPTH) fail(c, pos, "expression nested too deeply (more than %d levels)", CS_EXPR_MAX_DEPTH);
}

static int32_t parse_expr(struct cc *c);

static int tok_is(const struct tok *t, const char *src, const char *word)
{
    size_t n = strlen(word);
    return t->k == T_IDENT && t->end - t->pos == n && memcmp(src + t->pos, word, n) == 0;
}

static const char *const reserved[] = {"as", "break", "const", "continue", "else", "for", "function", "if",
                                       "import", "let", "loop", "package", "namespace", "return", "var",
                                       "void", "while", NULL};

static void check_ident(struct cc *c, const struct tok *t)
{
    for (int k = 0; reserved[k]; k++)
        if (tok_is(t, c->src, reserved[k])) fail(c, t->pos, "'%s' is a reserved word", reserved[k]);
}

/* Parse "(" args ")" into out[]; returns the count. */
static int parse_args(struct cc *c, int32_t *out, int max, size_t pos)
{
    expect(c, T_LP);
    int n = 0;
    enter(c, pos);
    if (c->t.k != T_RP) {
        for (;;) {
            if (n == max) fail(c, c->t.pos, "too many arguments");
            out[n++] = parse_expr(c);
            if (c->t.k != T_COMMA) break;
            next(c);
        }
    }
    expect(c, T_RP);
    c->depth--;
    return n;
}

static int32_t compile_regex(struct cc *c, int32_t pat)
{
    const struct node *pn = &c->nodes[pat];
    if (pn->op != N_LIT || pn->lit.type != CS_V_STRING)
        fail(c, pn->pos, "matches() needs a string literal pattern (compiled at load)");
    const char *p = c->pool + pn->str;
    if (strlen(p) != pn->len) fail(c, pn->pos, "NUL byte in regular expression");
    for (const char *q = p; *q; q++) {
        if (q[0] == '\\' && q[1] && strchr("dD", q[1]))
            fail(c, pn->pos, "\\%c is RE2 syntax; POSIX ERE has no \\%c (write [0-9] or [^0-9])", q[1], q[1]);
        if (q[0] == '\\' && q[1]) q++;
        else if (q[0] == '(' && q[1] == '?') fail(c, pn->pos, "(?...) groups and flags are RE2 syntax, not POSIX ERE");
    }
    if (c->nre == c->recap) {
        c->recap = c->recap ? c->recap * 2 : 4;
        c->re = cs_realloc(c->re, c->recap * sizeof *c->re);
    }
    int rc = regcomp(&c->re[c->nre], p, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char m[100];
        regerror(rc, &c->re[c->nre], m, sizeof m);
        regfree(&c->re[c->nre]);
        fail(c, pn->pos, "invalid regular expression: %s", m);
    }
    if (c->nre >= 255) fail(c, pn->pos, "too many regular expressions");
    return (int32_t)c->nre++;
}

static int32_t mk_matches(struct cc *c, size_t pos, int32_t s, int32_t pat)
{
    int32_t re = compile_regex(c, pat);
    int32_t n = mk(c, N_MATCHES, pos, s, -1, -1);
    c->nodes[n].slot = (uint8_t)re;
    return n;
}

/* exists/all/exists_one: ( ident , predicate ) */
static int32_t parse_macro(struct cc *c, enum op op, int32_t range, size_t pos)
{
    expect(c, T_LP);
    if (c->t.k != T_IDENT) fail(c, c->t.pos, "expected a variable name as the first argument of the macro");
    check_ident(c, &c->t);
    if (c->nloops >= CS_EXPR_MAX_LOOPS) fail(c, c->t.pos, "macros nested too deeply (more than %d)", CS_EXPR_MAX_LOOPS);
    int slot = c->nloops;
    c->loopname[slot] = c->src + c->t.pos;
    c->looplen[slot] = c->t.end - c->t.pos;
    next(c);
    expect(c, T_COMMA);
    enter(c, pos);
    c->nloops++;
    int32_t pred = parse_expr(c);
    c->nloops--;
    c->depth--;
    expect(c, T_RP);
    int32_t n = mk(c, op, pos, range, pred, -1);
    c->nodes[n].slot = (uint8_t)slot;
    return n;
}

static int32_t parse_method(struct cc *c, int32_t base, const struct tok *name)
{
    size_t pos = name->pos;
    const char *s = c->src;
    if (tok_is(name, s, "exists")) return parse_macro(c, N_EXISTS, base, pos);
    if (tok_is(name, s, "all")) return parse_macro(c, N_ALL, base, pos);
    if (tok_is(name, s, "exists_one")) return parse_macro(c, N_EXISTS_ONE, base, pos);
    int32_t args[4];
    int n = parse_args(c, args, 4, pos);
    static const struct { const char *name; enum op op; int nargs; } m[] = {
        {"startsWith", N_STARTS, 1}, {"endsWith", N_ENDS, 1}, {"contains", N_CONTAINS, 1},
        {"matches", N_MATCHES, 1}, {"size", N_SIZE, 0},
    };
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
        if (!tok_is(name, s, m[k].name)) continue;
        if (n != m[k].nargs) fail(c, pos, "%s() takes %d argument%s", m[k].name, m[k].nargs, m[k].nargs == 1 ? "" : "s");
        if (m[k].op == N_MATCHES) return mk_matches(c, pos, base, args[0]);
        return mk(c, m[k].op, pos, base, n ? args[0] : -1, -1);
    }
    fail(c, pos, "unknown method '%.*s'", (int)(name->end - name->pos), s + name->pos);
}

static int32_t parse_function(struct cc *c, const struct tok *name)
{
    size_t pos = name->pos;
    const char *s = c->src;
    int32_t args[4];
    int n = parse_args(c, args, 4, pos);
    if (tok_is(name, s, "has")) {
        if (n != 1) fail(c, pos, "has() takes 1 argument");
        const struct node *a = &c->nodes[args[0]];
        if (!((a->op == N_PATH && memchr(c->pool + a->str, '.', a->len)) || a->op == N_SELECT))
            fail(c, a->pos, "has() needs a field selection, e.g. has(event.properties.plan)");
        return mk(c, N_HAS, pos, args[0], -1, -1);
    }
    if (tok_is(name, s, "size")) {
        if (n != 1) fail(c, pos, "size() takes 1 argument");
        return mk(c, N_SIZE, pos, args[0], -1, -1);
    }
    if (tok_is(name, s, "matches")) {
        if (n != 2) fail(c, pos, "matches() takes 2 arguments");
        return mk_matches(c, pos, args[0], args[1]);
    }
    static const struct { const char *name; cs_vtype to; } conv[] = {
        {"int", CS_V_INT}, {"double", CS_V_DOUBLE}, {"string", CS_V_STRING},
        {"duration", CS_V_DURATION}, {"timestamp", CS_V_TIMESTAMP},
    };
    for (size_t k = 0; k < sizeof conv / sizeof conv[0]; k++) {
        if (!tok_is(name, s, conv[k].name)) continue;
        if (n != 1) fail(c, pos, "%s() takes 1 argument", conv[k].name);
        const struct node *a = &c->nodes[args[0]];
        /* Literal durations and timestamps are checked and folded now. */
        if (a->op == N_LIT && a->lit.type == CS_V_STRING &&
            (conv[k].to == CS_V_DURATION || conv[k].to == CS_V_TIMESTAMP)) {
            cs_value v = {.type = conv[k].to};
            const char *txt = c->pool + a->str;
            if (conv[k].to == CS_V_DURATION ? cs_parse_duration(txt, a->len, 0, &v.u.us)
                                            : (strlen(txt) != a->len || cs_parse_time(txt, &v.u.us)))
                fail(c, a->pos, "invalid %s \"%s\"", conv[k].name, txt);
            c->nn--; /* drop the string literal node */
            return mk_lit(c, pos, v);
        }
        int32_t r = mk(c, N_CONV, pos, args[0], -1, -1);
        c->nodes[r].slot = (uint8_t)conv[k].to;
        return r;
    }
    fail(c, pos, "unknown function '%.*s'", (int)(name->end - name->pos), s + name->pos);
}

static int32_t parse_ident(struct cc *c)
{
    struct tok id = c->t;
    const char *s = c->src;
    check_ident(c, &id);
    next(c);
    if (c->t.k == T_LP) return parse_function(c, &id);
    size_t idlen = id.end - id.pos;
    for (int k = c->nloops - 1; k >= 0; k--)
        if (c->looplen[k] == idlen && memcmp(c->loopname[k], s + id.pos, idlen) == 0) {
            int32_t n = mk(c, N_LOOPVAR, id.pos, -1, -1, -1);
            c->nodes[n].slot = (uint8_t)k;
            return n;
        }
    if (c->roots) {
        int ok = 0;
        for (int k = 0; c->roots[k] && !ok; k++) ok = tok_is(&id, s, c->roots[k]);
        if (!ok) {
            char list[200] = "";
            for (int k = 0; c->roots[k]; k++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", c->roots[k]);
            fail(c, id.pos, "unknown variable '%.*s' (expected %s)", (int)idlen, s + id.pos, list);
        }
    }
    /* Fold ident(.ident | ["const"])* into one dotted path. */
    char path[CS_EXPR_MAX_PATH];
    if (idlen >= sizeof path) fail(c, id.pos, "variable path too long");
    memcpy(path, s + id.pos, idlen);
    size_t plen = idlen;
    for (;;) {
        struct tok t1, t2, t3;
        const char *seg = NULL;
        size_t seglen = 0;
        size_t save_np = c->np;
        if (c->t.k == T_DOT) {
            peek(c, &c->t, &t1);
            if (t1.k != T_IDENT) break;
            peek(c, &t1, &t2);
            if (t2.k == T_LP) break; /* a method call */
            check_ident(c, &t1);
            seg = s + t1.pos, seglen = t1.end - t1.pos;
            t3 = t1;
        } else if (c->t.k == T_LB) {
            peek(c, &c->t, &t1);
            if (t1.k != T_STR) {
                c->np = save_np;
                break;
            }
            peek(c, &t1, &t2);
            if (t2.k != T_RB || t1.slen == 0 || memchr(c->pool + t1.soff, '.', t1.slen) ||
                strlen(c->pool + t1.soff) != t1.slen) {
                c->np = save_np;
                break;
            }
            seg = c->pool + t1.soff, seglen = t1.slen;
            t3 = t2;
        } else {
            break;
        }
        if (plen + 1 + seglen >= sizeof path) fail(c, c->t.pos, "variable path too long");
        path[plen++] = '.';
        memcpy(path + plen, seg, seglen);
        plen += seglen;
        c->np = save_np;
        c->t = t3;
        next(c);
    }
    int32_t n = mk(c, N_PATH, id.pos, -1, -1, -1);
    c->nodes[n].str = pool_add(c, path, plen);
    c->nodes[n].len = (uint32_t)plen;
    return n;
}

static int32_t parse_primary(struct cc *c)
{
    struct tok t = c->t;
    cs_value v = {.type = CS_V_NULL};
    switch (t.k) {
    case T_INT:
        next(c);
        if (t.big) {
            c->bigs++;
            c->bigpos = t.pos;
            v.type = CS_V_INT, v.u.i = INT64_MIN; /* valid only under unary minus */
            int32_t n = mk_lit(c, t.pos, v);
            c->nodes[n].slot = 1;
            return n;
        }
        v.type = CS_V_INT, v.u.i = t.i;
        return mk_lit(c, t.pos, v);
    case T_DOUBLE:
        next(c);
        v.type = CS_V_DOUBLE, v.u.d = t.d;
        return mk_lit(c, t.pos, v);
    case T_STR: {
        next(c);
        v.type = CS_V_STRING, v.u.s.len = t.slen;
        int32_t n = mk_lit(c, t.pos, v);
        c->nodes[n].str = t.soff, c->nodes[n].len = t.slen;
        return n;
    }
    case T_TRUE: case T_FALSE:
        next(c);
        v.type = CS_V_BOOL, v.u.b = t.k == T_TRUE;
        return mk_lit(c, t.pos, v);
    case T_NULL:
        next(c);
        return mk_lit(c, t.pos, v);
    case T_LP: {
        next(c);
        enter(c, t.pos);
        int32_t e = parse_expr(c);
        c->depth--;
        expect(c, T_RP);
        return e;
    }
    case T_LB: {
        next(c);
        enter(c, t.pos);
        int32_t items[CS_EXPR_VSCRATCH];
        int32_t n = 0;
        while (c->t.k != T_RB) {
            if (n == CS_EXPR_VSCRATCH) fail(c, c->t.pos, "list literal too long (more than %d items)", CS_EXPR_VSCRATCH);
            items[n++] = parse_expr(c);
            if (c->t.k != T_COMMA) break;
            next(c);
        }
        expect(c, T_RB);
        c->depth--;
        if (c->nk + (size_t)n > c->kcap) {
            c->kcap = (c->nk + (size_t)n) * 2 + 8;
            c->kids = cs_realloc(c->kids, c->kcap * sizeof *c->kids);
        }
        int32_t first = (int32_t)c->nk;
        if (n) memcpy(c->kids + c->nk, items, (size_t)n * sizeof *items);
        c->nk += (size_t)n;
        return mk(c, N_LIST, t.pos, first, n, -1);
    }
    case T_LC:
        fail(c, t.pos, "map literals are not supported");
    case T_IDENT:
        return parse_ident(c);
    case T_EOF:
        fail(c, t.pos, "unexpected end of expression");
    default:
        fail(c, t.pos, "unexpected %s", tkname(t.k));
    }
}

static int32_t parse_postfix(struct cc *c)
{
    int32_t e = parse_primary(c);
    for (;;) {
        if (c->t.k == T_DOT) {
            next(c);
            if (c->t.k != T_IDENT) fail(c, c->t.pos, "expected a field or method name after '.'");
            struct tok name = c->t;
            next(c);
            if (c->t.k == T_LP) {
                e = parse_method(c, e, &name);
            } else {
                check_ident(c, &name);
                int32_t n = mk(c, N_SELECT, name.pos, e, -1, -1);
                c->nodes[n].str = pool_add(c, c->src + name.pos, name.end - name.pos);
                c->nodes[n].len = (uint32_t)(name.end - name.pos);
                e = n;
            }
        } else if (c->t.k == T_LB) {
            size_t pos = c->t.pos;
            next(c);
            enter(c, pos);
            int32_t idx = parse_expr(c);
            c->depth--;
            expect(c, T_RB);
            e = mk(c, N_INDEX, pos, e, idx, -1);
        } else {
            return e;
        }
    }
}

static int32_t parse_unary(struct cc *c)
{
    struct tok t = c->t;
    if (t.k == T_NOT || t.k == T_MINUS) {
        next(c);
        enter(c, t.pos);
        int32_t e = parse_unary(c);
        c->depth--;
        struct node *n = &c->nodes[e];
        if (t.k == T_MINUS && n->op == N_LIT && n->lit.type == CS_V_INT && n->slot == 1) {
            n->slot = 0; /* -9223372036854775808 */
            c->bigs--;
            return e;
        }
        return mk(c, t.k == T_NOT ? N_NOT : N_NEG, t.pos, e, -1, -1);
    }
    return parse_postfix(c);
}

static int prec(enum tk k)
{
    switch (k) {
    case T_OR: return 1;
    case T_AND: return 2;
    case T_EQ: case T_NE: case T_LT: case T_LE: case T_GT: case T_GE: case T_IN: return 3;
    case T_PLUS: case T_MINUS: return 4;
    case T_STAR: case T_SLASH: case T_PCT: return 5;
    default: return 0;
    }
}

static int32_t parse_binary(struct cc *c, int minprec)
{
    int32_t left = parse_unary(c);
    for (;;) {
        enum tk k = c->t.k;
        int p = prec(k);
        if (p == 0 || p < minprec) return left;
        size_t pos = c->t.pos;
        next(c);
        enter(c, pos);
        int32_t right = parse_binary(c, p + 1);
        c->depth--;
        static const enum op ops[] = {
            [T_OR] = N_OR, [T_AND] = N_AND, [T_EQ] = N_EQ, [T_NE] = N_NE, [T_LT] = N_LT, [T_LE] = N_LE,
            [T_GT] = N_GT, [T_GE] = N_GE, [T_IN] = N_IN, [T_PLUS] = N_ADD, [T_MINUS] = N_SUB,
            [T_STAR] = N_MUL, [T_SLASH] = N_DIV, [T_PCT] = N_MOD,
        };
        left = mk(c, ops[k], pos, left, right, -1);
    }
}

static int32_t parse_expr(struct cc *c)
{
    int32_t cond = parse_binary(c, 1);
    if (c->t.k != T_Q) return cond;
    size_t pos = c->t.pos;
    next(c);
    enter(c, pos);
    int32_t a = parse_binary(c, 1);
    c->depth--;
    expect(c, T_COLON);
    enter(c, pos);
    int32_t b = parse_expr(c);
    c->depth--;
    return mk(c, N_COND, pos, cond, a, b);
}

static int run_parse(struct cc *c, int32_t *root)
{
    if (setjmp(c->jb)) return -1;
    if (c->len > CS_EXPR_MAX_LEN) fail(c, 0, "expression longer than %d bytes", CS_EXPR_MAX_LEN);
    for (size_t i = 0; i < c->len;) { /* the source must be UTF-8 without NUL */
        unsigned char b = (unsigned char)c->src[i];
        size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        if (b == 0) fail(c, i, "NUL byte in expression");
        if (n == 0 || i + n > c->len || (n == 2 && b < 0xC2)) fail(c, i, "invalid UTF-8");
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)c->src[i + k] & 0xC0) != 0x80) fail(c, i, "invalid UTF-8");
        i += n;
    }
    lex_at(c, 0, &c->t);
    if (c->t.k == T_EOF) fail(c, 0, "empty expression");
    *root = parse_expr(c);
    if (c->t.k != T_EOF) fail(c, c->t.pos, "unexpected %s after the expression", tkname(c->t.k));
    if (c->bigs > 0) fail(c, c->bigpos, "integer literal out of range");
    return 0;
}

static void cc_free(struct cc *c)
{
    free(c->nodes);
    free(c->kids);
    free(c->pool);
    for (size_t i = 0; i < c->nre; i++) regfree(&c->re[i]);
    free(c->re);
}

#define ALIGN8(x) (((x) + 7u) & ~(size_t)7u)

cs_expr *cs_expr_compile(const char *src, size_t len, const char *const *roots, cs_expr_error *err)
{
    cs_expr_error dummy;
    struct cc c;
    memset(&c, 0, sizeof c);
    c.src = src, c.len = len, c.roots = roots, c.err = err ? err : &dummy;
    memset(c.err, 0, sizeof *c.err);
    /* The lexer reads src[len] never; the source copy below is NUL-terminated. */
    int32_t root = -1;
    if (run_parse(&c, &root)) {
        cc_free(&c);
        return NULL;
    }
    /* Pack: header | nodes | kids | regexes | pool | source. */
    size_t off_nodes = ALIGN8(sizeof(cs_expr));
    size_t off_kids = off_nodes + ALIGN8(c.nn * sizeof(struct node));
    size_t off_re = off_kids + ALIGN8(c.nk * sizeof(int32_t));
    size_t off_pool = off_re + ALIGN8(c.nre * sizeof(regex_t));
    size_t off_src = off_pool + c.np;
    size_t total = off_src + len + 1;
    char *mem = cs_calloc(1, total);
    cs_expr *e = (cs_expr *)mem;
    struct node *nodes = (struct node *)(mem + off_nodes);
    memcpy(nodes, c.nodes, c.nn * sizeof *nodes);
    if (c.nk) memcpy(mem + off_kids, c.kids, c.nk * sizeof(int32_t));
    if (c.nre) memcpy(mem + off_re, c.re, c.nre * sizeof(regex_t)); /* movable: its buffers are on the heap */
    if (c.np) memcpy(mem + off_pool, c.pool, c.np);
    memcpy(mem + off_src, src, len);
    e->nodes = nodes;
    e->kids = (const int32_t *)(mem + off_kids);
    e->re = (regex_t *)(mem + off_re);
    e->nre = c.nre;
    e->pool = mem + off_pool;
    e->src = mem + off_src;
    e->root = root;
    e->size = total;
    for (size_t i = 0; i < c.nn; i++)
        if (nodes[i].op == N_LIT && nodes[i].lit.type == CS_V_STRING) nodes[i].lit.u.s.p = e->pool + nodes[i].str;
    c.nre = 0; /* ownership moved */
    cc_free(&c);
    return e;
}

void cs_expr_free(cs_expr *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->nre; i++) regfree(&e->re[i]);
    free(e);
}

const char *cs_expr_source(const cs_expr *e) { return e->src; }
size_t cs_expr_size(const cs_expr *e) { return e->size; }

/* ========================================================== the evaluator */

void cs_expr_env_init(cs_expr_env *env, cs_lookup_fn lookup, cs_field_fn field, void *ud)
{
    env->lookup = lookup, env->field = field, env->ud = ud;
    env->used = 0, env->vused = 0;
}

static cs_value verr(const char *m) { return (cs_value){.type = CS_V_ERROR, .u.err = m}; }
static cs_value vb(int b) { return (cs_value){.type = CS_V_BOOL, .u.b = !!b}; }
static int isnum(const cs_value *v) { return v->type == CS_V_INT || v->type == CS_V_DOUBLE; }

static const char E_OVERLOAD[] = "no matching overload";
static const char E_NOKEY[] = "no such key";
static const char E_OVERFLOW[] = "integer overflow";
static const char E_DIVZERO[] = "division by zero";
static const char E_MODZERO[] = "modulus by zero";
static const char E_SCRATCH[] = "evaluation scratch space exhausted";
static const char E_INDEX[] = "index out of range";
static const char E_MAPEQ[] = "comparing maps is not supported";
static const char E_CONV[] = "conversion failed";
static const char E_RANGE[] = "range must be a list";

/* Compare an int and a double exactly: -1, 0, 1, or 2 when unordered. */
static int cmp_id(int64_t i, double d)
{
    if (isnan(d)) return 2;
    if (d >= 9223372036854775808.0) return -1;
    if (d < -9223372036854775808.0) return 1;
    int64_t t = (int64_t)d; /* truncation toward zero, in range */
    if (i < t) return -1;
    if (i > t) return 1;
    double frac = d - (double)t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

/* Ordering: -1/0/1, 2 unordered (NaN), 3 no overload. */
static int vcmp(const cs_value *a, const cs_value *b)
{
    if (isnum(a) && isnum(b)) {
        if (a->type == CS_V_INT && b->type == CS_V_INT) return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
        if (a->type == CS_V_DOUBLE && b->type == CS_V_DOUBLE) {
            if (isnan(a->u.d) || isnan(b->u.d)) return 2;
            return a->u.d < b->u.d ? -1 : a->u.d > b->u.d;
        }
        if (a->type == CS_V_INT) return cmp_id(a->u.i, b->u.d);
        int r = cmp_id(b->u.i, a->u.d);
        return r == 2 ? 2 : -r;
    }
    if (a->type != b->type) return 3;
    switch (a->type) {
    case CS_V_STRING: {
        size_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
        int r = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
        if (r) return r < 0 ? -1 : 1;
        return a->u.s.len < b->u.s.len ? -1 : a->u.s.len > b->u.s.len;
    }
    case CS_V_BOOL: return a->u.b < b->u.b ? -1 : a->u.b > b->u.b;
    case CS_V_DURATION: case CS_V_TIMESTAMP: return a->u.us < b->u.us ? -1 : a->u.us > b->u.us;
    default: return 3;
    }
}

/* CEL equality (heterogeneous: different types are unequal, numbers compare
 * by value). 1 equal, 0 not, -1 error (maps). */
static int veq(const cs_value *a, const cs_value *b)
{
    if (isnum(a) && isnum(b)) return vcmp(a, b) == 0;
    if (a->type != b->type) return 0;
    switch (a->type) {
    case CS_V_NULL: return 1;
    case CS_V_LIST:
        if (a->u.list.n != b->u.list.n) return 0;
        for (size_t i = 0; i < a->u.list.n; i++) {
            int r = veq(&a->u.list.items[i], &b->u.list.items[i]);
            if (r != 1) return r;
        }
        return 1;
    case CS_V_MAP: return a->u.map.p == b->u.map.p ? 1 : -1;
    default: return vcmp(a, b) == 0;
    }
}

static cs_value ev(const cs_expr *e, int32_t ni, cs_expr_env *env);

static cs_value scratch_str(cs_expr_env *env, const char *a, size_t na, const char *b, size_t nb)
{
    if (na + nb > sizeof env->scratch - env->used) return verr(E_SCRATCH);
    char *p = env->scratch + env->used;
    if (na) memcpy(p, a, na);
    if (nb) memcpy(p + na, b, nb);
    env->used += na + nb;
    return cs_vstr(p, na + nb);
}

static size_t utf8_count(const char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)p[i] & 0xC0) != 0x80;
    return k;
}

static cs_value lookup_path(const cs_expr *e, const struct node *n, cs_expr_env *env, int *found)
{
    cs_value v = {.type = CS_V_NULL};
    *found = env->lookup ? env->lookup(env->ud, e->pool + n->str, n->len, &v) : 0;
    return v;
}

static cs_value field_of(cs_expr_env *env, const cs_value *m, const char *k, size_t klen, int *found)
{
    cs_value v = {.type = CS_V_NULL};
    *found = 0;
    if (m->type != CS_V_MAP || !env->field) return verr(E_OVERLOAD);
    *found = env->field(env->ud, m, k, klen, &v);
    return v;
}

static cs_value arith(enum op op, cs_value a, cs_value b, cs_expr_env *env)
{
    if (a.type == CS_V_INT && b.type == CS_V_INT) {
        int64_t r;
        switch (op) {
        case N_ADD: if (__builtin_add_overflow(a.u.i, b.u.i, &r)) return verr(E_OVERFLOW); break;
        case N_SUB: if (__builtin_sub_overflow(a.u.i, b.u.i, &r)) return verr(E_OVERFLOW); break;
        case N_MUL: if (__builtin_mul_overflow(a.u.i, b.u.i, &r)) return verr(E_OVERFLOW); break;
        case N_DIV:
            if (b.u.i == 0) return verr(E_DIVZERO);
            if (a.u.i == INT64_MIN && b.u.i == -1) return verr(E_OVERFLOW);
            r = a.u.i / b.u.i;
            break;
        default:
            if (b.u.i == 0) return verr(E_MODZERO);
            if (a.u.i == INT64_MIN && b.u.i == -1) return verr(E_OVERFLOW);
            r = a.u.i % b.u.i;
            break;
        }
        return cs_vint(r);
    }
    if (a.type == CS_V_DOUBLE && b.type == CS_V_DOUBLE) {
        switch (op) {
        case N_ADD: return cs_vdouble(a.u.d + b.u.d);
        case N_SUB: return cs_vdouble(a.u.d - b.u.d);
        case N_MUL: return cs_vdouble(a.u.d * b.u.d);
        case N_DIV: return cs_vdouble(a.u.d / b.u.d);
        default: return verr(E_OVERLOAD);
        }
    }
    if (op == N_ADD && a.type == CS_V_STRING && b.type == CS_V_STRING)
        return scratch_str(env, a.u.s.p, a.u.s.len, b.u.s.p, b.u.s.len);
    if (op == N_ADD && a.type == CS_V_LIST && b.type == CS_V_LIST) {
        if (a.u.list.n + b.u.list.n > CS_EXPR_VSCRATCH - env->vused) return verr(E_SCRATCH);
        cs_value *p = env->vscratch + env->vused;
        for (size_t i = 0; i < a.u.list.n; i++) p[i] = a.u.list.items[i];
        for (size_t i = 0; i < b.u.list.n; i++) p[a.u.list.n + i] = b.u.list.items[i];
        env->vused += a.u.list.n + b.u.list.n;
        cs_value v = {.type = CS_V_LIST};
        v.u.list.items = p, v.u.list.n = a.u.list.n + b.u.list.n;
        return v;
    }
    /* Time arithmetic. */
    int64_t r;
    cs_vtype ta = a.type, tb = b.type;
    if (op == N_ADD && ((ta == CS_V_DURATION && (tb == CS_V_DURATION || tb == CS_V_TIMESTAMP)) ||
                        (ta == CS_V_TIMESTAMP && tb == CS_V_DURATION))) {
        if (__builtin_add_overflow(a.u.us, b.u.us, &r)) return verr(E_OVERFLOW);
        return (cs_value){.type = ta == CS_V_TIMESTAMP || tb == CS_V_TIMESTAMP ? CS_V_TIMESTAMP : CS_V_DURATION, .u.us = r};
    }
    if (op == N_SUB && ((ta == CS_V_TIMESTAMP && (tb == CS_V_TIMESTAMP || tb == CS_V_DURATION)) ||
                        (ta == CS_V_DURATION && tb == CS_V_DURATION))) {
        if (__builtin_sub_overflow(a.u.us, b.u.us, &r)) return verr(E_OVERFLOW);
        return (cs_value){.type = ta == CS_V_TIMESTAMP && tb == CS_V_DURATION ? CS_V_TIMESTAMP : CS_V_DURATION, .u.us = r};
    }
    return verr(E_OVERLOAD);
}

static cs_value convert(cs_value a, cs_vtype to, cs_expr_env *env)
{
    char buf[64];
    if (a.type == to && to != CS_V_TIMESTAMP && to != CS_V_DURATION) return a;
    switch (to) {
    case CS_V_INT:
        if (a.type == CS_V_DOUBLE) {
            if (!(a.u.d > -9223372036854775809.0 && a.u.d < 9223372036854775808.0)) return verr(E_OVERFLOW);
            return cs_vint((int64_t)a.u.d);
        }
        if (a.type == CS_V_TIMESTAMP) return cs_vint(a.u.us / 1000000 - (a.u.us % 1000000 < 0));
        if (a.type == CS_V_STRING) {
            if (a.u.s.len == 0 || a.u.s.len >= sizeof buf) return verr(E_CONV);
            memcpy(buf, a.u.s.p, a.u.s.len), buf[a.u.s.len] = 0;
            char *end;
            errno = 0;
            long long v = strtoll(buf, &end, 10);
            if (errno || *end || buf[0] == ' ' || buf[0] == '+') return verr(E_CONV);
            return cs_vint(v);
        }
        return verr(E_OVERLOAD);
    case CS_V_DOUBLE:
        if (a.type == CS_V_INT) return cs_vdouble((double)a.u.i);
        if (a.type == CS_V_STRING) {
            if (a.u.s.len == 0 || a.u.s.len >= sizeof buf) return verr(E_CONV);
            memcpy(buf, a.u.s.p, a.u.s.len), buf[a.u.s.len] = 0;
            char *end;
            double d = strtod(buf, &end);
            if (*end || buf[0] == ' ') return verr(E_CONV);
            return cs_vdouble(d);
        }
        return verr(E_OVERLOAD);
    case CS_V_STRING:
        if (a.type == CS_V_INT || a.type == CS_V_DOUBLE || a.type == CS_V_BOOL || a.type == CS_V_DURATION ||
            a.type == CS_V_TIMESTAMP) {
            size_t n = cs_value_format(&a, buf, sizeof buf, 0);
            if (n >= sizeof buf) return verr(E_CONV);
            return scratch_str(env, buf, n, NULL, 0);
        }
        return verr(E_OVERLOAD);
    case CS_V_DURATION:
        if (a.type == CS_V_DURATION) return a;
        if (a.type == CS_V_STRING) {
            cs_value v = {.type = CS_V_DURATION};
            if (cs_parse_duration(a.u.s.p, a.u.s.len, 0, &v.u.us)) return verr(E_CONV);
            return v;
        }
        return verr(E_OVERLOAD);
    case CS_V_TIMESTAMP:
        if (a.type == CS_V_TIMESTAMP) return a;
        if (a.type == CS_V_STRING) {
            cs_value v = {.type = CS_V_TIMESTAMP};
            if (a.u.s.len >= sizeof buf || memchr(a.u.s.p, 0, a.u.s.len)) return verr(E_CONV);
            memcpy(buf, a.u.s.p, a.u.s.len), buf[a.u.s.len] = 0;
            if (cs_parse_time(buf, &v.u.us)) return verr(E_CONV);
            return v;
        }
        if (a.type == CS_V_INT) {
            if (a.u.i > INT64_MAX / 1000000 || a.u.i < INT64_MIN / 1000000) return verr(E_OVERFLOW);
            return (cs_value){.type = CS_V_TIMESTAMP, .u.us = a.u.i * 1000000};
        }
        return verr(E_OVERLOAD);
    default:
        return verr(E_OVERLOAD);
    }
}

/* exists / all / exists_one over a list. */
static cs_value macro(const cs_expr *e, const struct node *n, cs_expr_env *env)
{
    cs_value range = ev(e, n->a, env);
    if (range.type == CS_V_ERROR) return range;
    if (range.type != CS_V_LIST) return verr(E_RANGE);
    size_t used = env->used, vused = env->vused;
    const char *errseen = NULL;
    size_t count = 0;
    for (size_t i = 0; i < range.u.list.n; i++) {
        env->loop[n->slot] = range.u.list.items[i];
        cs_value r = ev(e, n->b, env);
        env->used = used, env->vused = vused;
        if (r.type == CS_V_ERROR) {
            if (n->op == N_EXISTS_ONE) return r;
            errseen = r.u.err;
            continue;
        }
        if (r.type != CS_V_BOOL) {
            if (n->op == N_EXISTS_ONE) return verr(E_OVERLOAD);
            errseen = E_OVERLOAD;
            continue;
        }
        if (n->op == N_EXISTS && r.u.b) return vb(1);
        if (n->op == N_ALL && !r.u.b) return vb(0);
        count += r.u.b;
    }
    if (errseen) return verr(errseen);
    if (n->op == N_EXISTS) return vb(0);
    if (n->op == N_ALL) return vb(1);
    return vb(count == 1);
}

static cs_value ev(const cs_expr *e, int32_t ni, cs_expr_env *env)
{
    const struct node *n = &e->nodes[ni];
    cs_value a, b;
    int found;
    switch ((enum op)n->op) {
    case N_LIT:
        return n->lit;
    case N_PATH:
        a = lookup_path(e, n, env, &found);
        return found ? a : verr(E_NOKEY);
    case N_LOOPVAR:
        return env->loop[n->slot];
    case N_LIST: {
        if ((size_t)n->b > CS_EXPR_VSCRATCH - env->vused) return verr(E_SCRATCH);
        cs_value *items = env->vscratch + env->vused;
        env->vused += (size_t)n->b;
        for (int32_t k = 0; k < n->b; k++) {
            items[k] = ev(e, e->kids[n->a + k], env);
            if (items[k].type == CS_V_ERROR) return items[k];
        }
        cs_value v = {.type = CS_V_LIST};
        v.u.list.items = items, v.u.list.n = (size_t)n->b;
        return v;
    }
    case N_SELECT:
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        b = field_of(env, &a, e->pool + n->str, n->len, &found);
        return b.type == CS_V_ERROR ? b : found ? b : verr(E_NOKEY);
    case N_INDEX:
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        b = ev(e, n->b, env);
        if (b.type == CS_V_ERROR) return b;
        if (a.type == CS_V_LIST) {
            int64_t i;
            if (b.type == CS_V_INT) i = b.u.i;
            else if (b.type == CS_V_DOUBLE && b.u.d == floor(b.u.d) && fabs(b.u.d) < 9e18) i = (int64_t)b.u.d;
            else return verr(E_OVERLOAD);
            if (i < 0 || (uint64_t)i >= a.u.list.n) return verr(E_INDEX);
            return a.u.list.items[i];
        }
        if (a.type == CS_V_MAP && b.type == CS_V_STRING) {
            cs_value r = field_of(env, &a, b.u.s.p, b.u.s.len, &found);
            return r.type == CS_V_ERROR ? r : found ? r : verr(E_NOKEY);
        }
        return verr(E_OVERLOAD);
    case N_NOT:
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        return a.type == CS_V_BOOL ? vb(!a.u.b) : verr(E_OVERLOAD);
    case N_NEG:
        a = ev(e, n->a, env);
        if (a.type == CS_V_INT) return a.u.i == INT64_MIN ? verr(E_OVERFLOW) : cs_vint(-a.u.i);
        if (a.type == CS_V_DOUBLE) return cs_vdouble(-a.u.d);
        if (a.type == CS_V_DURATION) {
            if (a.u.us == INT64_MIN) return verr(E_OVERFLOW);
            a.u.us = -a.u.us;
            return a;
        }
        return a.type == CS_V_ERROR ? a : verr(E_OVERLOAD);
    case N_AND: case N_OR: {
        int decide = n->op == N_OR; /* the value that decides alone */
        a = ev(e, n->a, env);
        if (a.type == CS_V_BOOL && a.u.b == decide) return a;
        b = ev(e, n->b, env);
        if (b.type == CS_V_BOOL && b.u.b == decide) return b;
        if (a.type == CS_V_ERROR) return a;
        if (a.type != CS_V_BOOL) return verr(E_OVERLOAD);
        if (b.type == CS_V_ERROR) return b;
        if (b.type != CS_V_BOOL) return verr(E_OVERLOAD);
        return vb(!decide);
    }
    case N_COND:
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        if (a.type != CS_V_BOOL) return verr(E_OVERLOAD);
        return ev(e, a.u.b ? n->b : n->c, env);
    case N_EQ: case N_NE: {
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        b = ev(e, n->b, env);
        if (b.type == CS_V_ERROR) return b;
        int r = veq(&a, &b);
        if (r < 0) return verr(E_MAPEQ);
        return vb(n->op == N_EQ ? r : !r);
    }
    case N_LT: case N_LE: case N_GT: case N_GE: {
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        b = ev(e, n->b, env);
        if (b.type == CS_V_ERROR) return b;
        int r = vcmp(&a, &b);
        if (r == 3) return verr(E_OVERLOAD);
        if (r == 2) return vb(0);
        switch (n->op) {
        case N_LT: return vb(r < 0);
        case N_LE: return vb(r <= 0);
        case N_GT: return vb(r > 0);
        default: return vb(r >= 0);
        }
    }
    case N_IN:
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        b = ev(e, n->b, env);
        if (b.type == CS_V_ERROR) return b;
        if (b.type == CS_V_LIST) {
            for (size_t i = 0; i < b.u.list.n; i++) {
                int r = veq(&a, &b.u.list.items[i]);
                if (r < 0) return verr(E_MAPEQ);
                if (r) return vb(1);
            }
            return vb(0);
        }
        if (b.type == CS_V_MAP && a.type == CS_V_STRING) {
            cs_value r = field_of(env, &b, a.u.s.p, a.u.s.len, &found);
            return r.type == CS_V_ERROR ? r : vb(found);
        }
        return verr(E_OVERLOAD);
    case N_ADD: case N_SUB: case N_MUL: case N_DIV: case N_MOD:
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        b = ev(e, n->b, env);
        if (b.type == CS_V_ERROR) return b;
        return arith((enum op)n->op, a, b, env);
    case N_HAS: {
        const struct node *t = &e->nodes[n->a];
        if (t->op == N_PATH) {
            lookup_path(e, t, env, &found);
            return vb(found);
        }
        a = ev(e, t->a, env); /* N_SELECT */
        if (a.type == CS_V_ERROR) return a;
        b = field_of(env, &a, e->pool + t->str, t->len, &found);
        return b.type == CS_V_ERROR ? b : vb(found);
    }
    case N_SIZE:
        a = ev(e, n->a, env);
        switch (a.type) {
        case CS_V_STRING: return cs_vint((int64_t)utf8_count(a.u.s.p, a.u.s.len));
        case CS_V_LIST: return cs_vint((int64_t)a.u.list.n);
        case CS_V_MAP: return cs_vint((int64_t)a.u.map.n);
        case CS_V_ERROR: return a;
        default: return verr(E_OVERLOAD);
        }
    case N_STARTS: case N_ENDS: case N_CONTAINS:
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        b = ev(e, n->b, env);
        if (b.type == CS_V_ERROR) return b;
        if (a.type != CS_V_STRING || b.type != CS_V_STRING) return verr(E_OVERLOAD);
        if (b.u.s.len > a.u.s.len) return vb(0);
        if (b.u.s.len == 0) return vb(1);
        if (n->op == N_STARTS) return vb(memcmp(a.u.s.p, b.u.s.p, b.u.s.len) == 0);
        if (n->op == N_ENDS) return vb(memcmp(a.u.s.p + a.u.s.len - b.u.s.len, b.u.s.p, b.u.s.len) == 0);
        return vb(memmem(a.u.s.p, a.u.s.len, b.u.s.p, b.u.s.len) != NULL);
    case N_MATCHES: {
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        if (a.type != CS_V_STRING) return verr(E_OVERLOAD);
        regmatch_t m[1];
        m[0].rm_so = 0, m[0].rm_eo = (regoff_t)a.u.s.len;
        static const char empty[1] = "";
        return vb(regexec(&e->re[n->slot], a.u.s.len ? a.u.s.p : empty, 1, m, REG_STARTEND) == 0);
    }
    case N_EXISTS: case N_ALL: case N_EXISTS_ONE:
        return macro(e, n, env);
    case N_CONV:
        a = ev(e, n->a, env);
        if (a.type == CS_V_ERROR) return a;
        return convert(a, (cs_vtype)n->slot, env);
    }
    return verr(E_OVERLOAD);
}

cs_value cs_expr_eval(const cs_expr *e, cs_expr_env *env)
{
    env->used = 0, env->vused = 0;
    return ev(e, e->root, env);
}

int cs_expr_test(const cs_expr *e, cs_expr_env *env, const char **why)
{
    cs_value v = cs_expr_eval(e, env);
    if (v.type == CS_V_BOOL) return v.u.b;
    if (why) *why = v.type == CS_V_ERROR ? v.u.err : "condition is not a bool";
    return -1;
}

/* ======================================================== formatting etc. */

struct out {
    char  *buf;
    size_t cap, n;
};

static void out_add(struct out *o, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++, o->n++)
        if (o->n + 1 < o->cap) o->buf[o->n] = p[i];
}

static void out_str(struct out *o, const char *p, size_t n, int json)
{
    if (!json) {
        out_add(o, p, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        char esc[8];
        if (ch == '"' || ch == '\\') esc[0] = '\\', esc[1] = (char)ch, out_add(o, esc, 2);
        else if (ch == '\n') out_add(o, "\\n", 2);
        else if (ch == '\r') out_add(o, "\\r", 2);
        else if (ch == '\t') out_add(o, "\\t", 2);
        else if (ch < 0x20) snprintf(esc, sizeof esc, "\\u%04x", ch), out_add(o, esc, 6);
        else out_add(o, (const char *)&p[i], 1);
    }
}

static void fmt_double(double d, char *buf, size_t cap)
{
    if (isnan(d)) snprintf(buf, cap, "NaN");
    else if (isinf(d)) snprintf(buf, cap, d > 0 ? "+Inf" : "-Inf");
    else
        for (int p = 15; p <= 17; p++) {
            snprintf(buf, cap, "%.*g", p, d);
            if (strtod(buf, NULL) == d) break;
        }
}

static void fmt_value(struct out *o, const cs_value *v, int json, int depth)
{
    char tmp[64] = "";
    switch (v->type) {
    case CS_V_ERROR: out_add(o, "<error: ", 8), out_add(o, v->u.err, strlen(v->u.err)), out_add(o, ">", 1); return;
    case CS_V_NULL: out_add(o, "null", 4); return;
    case CS_V_BOOL: out_add(o, v->u.b ? "true" : "false", v->u.b ? 4 : 5); return;
    case CS_V_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i); break;
    case CS_V_DOUBLE: fmt_double(v->u.d, tmp, sizeof tmp); break;
    case CS_V_STRING: out_str(o, v->u.s.p, v->u.s.len, json); return;
    case CS_V_DURATION: {
        int64_t us = v->u.us;
        uint64_t mag = us < 0 ? (uint64_t)0 - (uint64_t)us : (uint64_t)us;
        if (mag % 1000000)
            snprintf(tmp, sizeof tmp, "%s%llu.%06llus", us < 0 ? "-" : "", (unsigned long long)(mag / 1000000),
                     (unsigned long long)(mag % 1000000));
        else
            snprintf(tmp, sizeof tmp, "%s%llus", us < 0 ? "-" : "", (unsigned long long)(mag / 1000000));
        if (mag % 1000000) { /* trim trailing zeros of the fraction */
            size_t l = strlen(tmp) - 1;
            while (tmp[l - 1] == '0') tmp[l - 1] = 's', tmp[l] = 0, l--;
        }
        break;
    }
    case CS_V_TIMESTAMP: cs_fmt_time_ms(v->u.us, tmp, sizeof tmp); break;
    case CS_V_LIST:
        out_add(o, "[", 1);
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i) out_add(o, ", ", 2);
            if (depth < 8) fmt_value(o, &v->u.list.items[i], json, depth + 1);
            else out_add(o, "...", 3);
        }
        out_add(o, "]", 1);
        return;
    case CS_V_MAP: out_add(o, "{...}", 5); return;
    }
    out_add(o, tmp, strlen(tmp));
}

size_t cs_value_format(const cs_value *v, char *buf, size_t cap, int json_escape)
{
    struct out o = {buf, cap, 0};
    fmt_value(&o, v, json_escape, 0);
    if (cap) buf[o.n < cap ? o.n : cap - 1] = 0;
    return o.n;
}

int cs_parse_duration(const char *s, size_t len, int with_days, int64_t *us)
{
    size_t i = 0;
    int neg = 0;
    if (i < len && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == len) return -1;
    if (len - i == 1 && s[i] == '0') {
        *us = 0;
        return 0;
    }
    int64_t total = 0; /* nanoseconds */
    while (i < len) {
        int64_t whole = 0, frac = 0, scale = 1;
        size_t d0 = i;
        while (i < len && is_digit((unsigned char)s[i])) {
            if (__builtin_mul_overflow(whole, 10, &whole) || __builtin_add_overflow(whole, s[i] - '0', &whole))
                return -1;
            i++;
        }
        int nd = i > d0;
        if (i < len && s[i] == '.') {
            i++;
            size_t f0 = i;
            while (i < len && is_digit((unsigned char)s[i])) {
                if (scale < 1000000000000000000LL) frac = frac * 10 + (s[i] - '0'), scale *= 10;
                i++;
            }
            nd |= i > f0;
        }
        if (!nd) return -1;
        int64_t unit;
        if (i + 1 < len && s[i] == 'n' && s[i + 1] == 's') unit = 1, i += 2;
        else if (i + 1 < len && s[i] == 'u' && s[i + 1] == 's') unit = 1000, i += 2;
        else if (i + 2 < len && (unsigned char)s[i] == 0xC2 && (unsigned char)s[i + 1] == 0xB5 && s[i + 2] == 's')
            unit = 1000, i += 3;
        else if (i + 1 < len && s[i] == 'm' && s[i + 1] == 's') unit = 1000000, i += 2;
        else if (i < len && s[i] == 's') unit = 1000000000LL, i++;
        else if (i < len && s[i] == 'm') unit = 60 * 1000000000LL, i++;
        else if (i < len && s[i] == 'h') unit = 3600 * 1000000000LL, i++;
        else if (with_days && i < len && s[i] == 'd') unit = 86400 * 1000000000LL, i++;
        else return -1;
        int64_t v;
        if (__builtin_mul_overflow(whole, unit, &v)) return -1;
        /* frac/scale of a unit, in ns (unit <= 8.64e13, frac < scale <= 1e18) */
        long double fv = (long double)frac * (long double)unit / (long double)scale;
        if (__builtin_add_overflow(v, (int64_t)fv, &v) || __builtin_add_overflow(total, v, &total)) return -1;
    }
    if (neg) total = -total;
    *us = total / 1000;
    return 0;
}
