/* memsys-brk-helper: brk/sbrk experiments in a process whose heap nobody else moves.
 *
 * CPython's allocator moves the program break on its own, so the break cannot be
 * studied from inside the interpreter. This program runs the steps named on its
 * command line, in order, and prints one JSON object describing what it saw. It
 * never calls malloc (nor stdio, which would) except in the malloc/free steps that
 * are the experiment, so every movement of the break is one the steps caused.
 *
 * Steps (numbers are decimal or 0x hex, may be negative; EXPR is start, cur, slotN,
 * or a number, optionally followed by +N or -N):
 *   sbrk:N         glibc sbrk(N)             -> ret, errno
 *   brk:EXPR       glibc brk(EXPR)           -> ret (0 / -1), errno
 *   rawbrk:EXPR    syscall(SYS_brk, EXPR)    -> ret (the break the kernel reports)
 *   read:EXPR      probe a read              -> value, or fault {signo, code, addr}
 *   write:EXPR=V   probe a write of byte V   -> fault or null
 *   rlimit-data:N  setrlimit(RLIMIT_DATA) soft=N, hard unchanged -> ret, errno
 *   malloc:N       malloc(N) into the next slot -> ret (slotK in later EXPRs)
 *   free:K         free(slotK)
 *   mallopt:P=V    mallopt(P, V)             -> ret
 *   trim:N         malloc_trim(N)            -> ret
 *   vma:EXPR       the /proc/self/maps line covering EXPR -> {start, end, perms, path} or null
 * Every step also reports the break after it ("brk_after"). */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_SLOTS 64

static char out[1 << 16];
static size_t out_len;
static char maps_text[1 << 16];
static void *slots[MAX_SLOTS];
static int slot_count;
static uintptr_t initial_break;

static void emit(const char *text)
{
    size_t n = strlen(text);
    if (out_len + n < sizeof out) {
        memcpy(out + out_len, text, n);
        out_len += n;
    }
}

static void emit_int(long long value)
{
    char digits[32];
    int i = 0;
    unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        digits[i++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        emit("-");
    char text[32];
    for (int j = 0; j < i; j++)
        text[j] = digits[i - 1 - j];
    text[i] = '\0';
    emit(text);
}

static void emit_uint(unsigned long long value)
{
    char text[32];
    int i = 31;
    text[i] = '\0';
    do {
        text[--i] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    emit(text + i);
}

static void emit_string(const char *text, size_t length)
{
    emit("\"");
    for (size_t i = 0; i < length; i++) {
        char c[2] = {text[i], '\0'};
        if (text[i] == '"' || text[i] == '\\')
            emit("\\");
        if ((unsigned char)text[i] < 0x20)
            continue;
        emit(c);
    }
    emit("\"");
}

static int parse_number(const char *text, long long *value)
{
    char *end;
    errno = 0;
    if (text[0] == '-') {
        *value = strtoll(text, &end, 0);
    } else {
        /* addresses at or above 2^63 (the kernel half) are numbers too */
        *value = (long long)strtoull(text, &end, 0);
    }
    return errno == 0 && end != text && *end == '\0';
}

static int parse_expr(const char *text, uintptr_t *value)
{
    uintptr_t base = 0;
    const char *rest = text;
    if (strncmp(text, "start", 5) == 0) {
        base = initial_break;
        rest = text + 5;
    } else if (strncmp(text, "cur", 3) == 0) {
        base = (uintptr_t)syscall(SYS_brk, 0);
        rest = text + 3;
    } else if (strncmp(text, "slot", 4) == 0) {
        char *end;
        long index = strtol(text + 4, &end, 10);
        if (end == text + 4 || index < 0 || index >= slot_count)
            return 0;
        base = (uintptr_t)slots[index];
        rest = end;
    }
    if (*rest == '\0') {
        *value = base;
        return rest != text;
    }
    long long offset;
    if (!parse_number(rest, &offset))
        return 0;
    *value = base + (uintptr_t)offset;
    return 1;
}

static void emit_fault(const memsys_fault *fault)
{
    emit("{\"signo\":");
    emit_int(fault->signo);
    emit(",\"code\":");
    emit_int(fault->code);
    emit(",\"addr\":");
    emit_uint(fault->addr);
    emit("}");
}

static void emit_vma(uintptr_t addr)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    ssize_t total = 0;
    if (fd >= 0) {
        ssize_t n;
        while ((n = read(fd, maps_text + total, sizeof maps_text - 1 - (size_t)total)) > 0)
            total += n;
        close(fd);
    }
    maps_text[total] = '\0';
    for (char *line = maps_text; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *end;
        unsigned long long lo = strtoull(line, &end, 16);
        unsigned long long hi = strtoull(end + 1, &end, 16);
        if (addr >= lo && addr < hi) {
            emit(",\"vma\":{\"start\":");
            emit_uint(lo);
            emit(",\"end\":");
            emit_uint(hi);
            emit(",\"perms\":");
            emit_string(end + 1, 4);
            char *path = strchr(end + 1, '/');
            char *bracket = strchr(end + 1, '[');
            char *name = path ? path : bracket;
            emit(",\"path\":");
            emit_string(name ? name : "", name ? strlen(name) : 0);
            emit("}");
            return;
        }
        line = next;
    }
    emit(",\"vma\":null");
}

static int run_step(const char *step)
{
    const char *colon = strchr(step, ':');
    if (!colon)
        return 0; /* nothing emitted yet */
    size_t name_length = (size_t)(colon - step);
    const char *arg = colon + 1;
    long long number;
    uintptr_t addr;
    memsys_fault fault;
    size_t rollback = out_len;

    emit("{\"step\":");
    emit_string(step, strlen(step));
    errno = 0;
#define IS(name) (name_length == strlen(name) && strncmp(step, name, name_length) == 0)
    if (IS("sbrk") && parse_number(arg, &number)) {
        void *ret = sbrk((intptr_t)number);
        int saved = errno;
        emit(",\"ret\":");
        emit_uint((uintptr_t)ret);
        emit(",\"errno\":");
        emit_int(ret == (void *)-1 ? saved : 0);
    } else if (IS("brk") && parse_expr(arg, &addr)) {
        int ret = brk((void *)addr);
        int saved = errno;
        emit(",\"ret\":");
        emit_int(ret);
        emit(",\"errno\":");
        emit_int(ret == -1 ? saved : 0);
    } else if (IS("rawbrk") && parse_expr(arg, &addr)) {
        long ret = syscall(SYS_brk, addr);
        emit(",\"ret\":");
        emit_uint((unsigned long)ret);
    } else if (IS("read") && parse_expr(arg, &addr)) {
        uint8_t value = 0;
        emit(",\"addr\":");
        emit_uint(addr);
        if (memsys_probe_read(addr, &fault, &value)) {
            emit(",\"fault\":");
            emit_fault(&fault);
        } else {
            emit(",\"fault\":null,\"value\":");
            emit_int(value);
        }
    } else if (IS("write")) {
        char target[128];
        const char *equals = strchr(arg, '=');
        if (!equals || (size_t)(equals - arg) >= sizeof target) {
            out_len = rollback;
            return 0;
        }
        memcpy(target, arg, (size_t)(equals - arg));
        target[equals - arg] = '\0';
        if (!parse_expr(target, &addr) || !parse_number(equals + 1, &number)) {
            out_len = rollback;
            return 0;
        }
        emit(",\"addr\":");
        emit_uint(addr);
        emit(",\"fault\":");
        if (memsys_probe_write(addr, (uint8_t)number, &fault))
            emit_fault(&fault);
        else
            emit("null");
    } else if (IS("rlimit-data") && parse_number(arg, &number)) {
        struct rlimit limit;
        getrlimit(RLIMIT_DATA, &limit);
        limit.rlim_cur = (rlim_t)number;
        int ret = setrlimit(RLIMIT_DATA, &limit);
        int saved = errno;
        emit(",\"ret\":");
        emit_int(ret);
        emit(",\"errno\":");
        emit_int(ret == -1 ? saved : 0);
    } else if (IS("malloc") && parse_number(arg, &number) && slot_count < MAX_SLOTS) {
        void *ret = malloc((size_t)number);
        emit(",\"slot\":");
        emit_int(slot_count);
        slots[slot_count++] = ret;
        emit(",\"ret\":");
        emit_uint((uintptr_t)ret);
    } else if (IS("free") && parse_number(arg, &number) && number >= 0 && number < slot_count) {
        free(slots[number]);
        slots[number] = NULL;
    } else if (IS("mallopt")) {
        long long parameter, value;
        char left[32];
        const char *equals = strchr(arg, '=');
        if (!equals || (size_t)(equals - arg) >= sizeof left) {
            out_len = rollback;
            return 0;
        }
        memcpy(left, arg, (size_t)(equals - arg));
        left[equals - arg] = '\0';
        if (!parse_number(left, &parameter) || !parse_number(equals + 1, &value)) {
            out_len = rollback;
            return 0;
        }
        emit(",\"ret\":");
        emit_int(mallopt((int)parameter, (int)value));
    } else if (IS("trim") && parse_number(arg, &number)) {
        emit(",\"ret\":");
        emit_int(malloc_trim((size_t)number));
    } else if (IS("vma") && parse_expr(arg, &addr)) {
        emit(",\"addr\":");
        emit_uint(addr);
        emit_vma(addr);
    } else {
        out_len = rollback;
        return 0;
    }
#undef IS
    emit(",\"brk_after\":");
    emit_uint((uintptr_t)syscall(SYS_brk, 0));
    emit("}");
    return 1;
}

int main(int argc, char **argv)
{
    initial_break = (uintptr_t)sbrk(0);
    emit("{\"pid\":");
    emit_int(getpid());
    emit(",\"page_size\":");
    emit_int(sysconf(_SC_PAGESIZE));
    emit(",\"start\":");
    emit_uint(initial_break);
    emit(",\"steps\":[");
    int status = 0;
    for (int i = 1; i < argc; i++) {
        if (i > 1)
            emit(",");
        if (!run_step(argv[i])) {
            emit("{\"step\":");
            emit_string(argv[i], strlen(argv[i]));
            emit(",\"error\":\"cannot parse step\"}");
            status = 2;
            break;
        }
    }
    emit("]}\n");
    ssize_t written = write(1, out, out_len);
    return written == (ssize_t)out_len ? status : 1;
}
