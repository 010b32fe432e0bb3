/* memsys-brk-helper: a small process of its own for process-wide experiments
 * (brk, malloc, mlockall).
 *
 * Some memory calls act on the whole process. CPython's allocator moves the program
 * break on its own, so the break cannot be studied from inside the interpreter; and
 * mlockall(MCL_CURRENT) locks, and so populates, every mapping of the caller, which
 * for a forked ~50 MB pytest means copying all of it. This program is a few MB: it
 * runs the steps named on its command line, in order, and prints one JSON object
 * describing what it saw. It never calls malloc (nor stdio, which would) except in
 * the malloc/free steps that are the experiment, so every movement of the break is
 * one the steps caused: /proc files are read with open/read into static buffers.
 *
 * Steps (numbers are decimal or 0x hex, may be negative; EXPR is start, cur, slotN,
 * or a number, optionally followed by +N or -N; PAGES is a page count >= 0); each is
 * one entry of the table step_kinds and one step_NAME function, and
 * `memsys-brk-helper --steps` prints the table as JSON (a test holds brk.py's to it):
 *   sbrk:N         glibc sbrk(N)             -> ret, errno
 *   brk:EXPR       glibc brk(EXPR)           -> ret (0 / -1), errno
 *   rawbrk:EXPR    syscall(SYS_brk, EXPR)    -> ret (the break the kernel reports)
 *   read:EXPR      probe a read              -> value, or fault {signo, code, addr}
 *   write:EXPR=BYTE  probe a write of BYTE  -> fault or null
 *   rlimit-data:N  setrlimit(RLIMIT_DATA) soft=N, hard unchanged -> ret, errno
 *   malloc:N       malloc(N) into the next slot -> ret (slotK in later EXPRs)
 *   free:SLOT      free(slotSLOT), a malloc slot
 *   mallopt:PARAM=VALUE  mallopt(PARAM, VALUE) -> ret
 *   trim:N         malloc_trim(N)            -> ret
 *   vma:EXPR       the /proc/self/maps line covering EXPR -> {start, end, perms, path} or null
 *   mmap:PAGES     anonymous private read-write mmap into the next slot -> ret, errno, slot
 *   mmapat:EXPR,PAGES  the same at address EXPR with MAP_FIXED_NOREPLACE (never replaces
 *                  a mapping: EEXIST instead) -> ret, errno, slot
 *   mlockall:FLAGS mlockall(FLAGS)           -> ret, errno
 *   munlockall     munlockall() (the one step without an argument) -> ret, errno
 *   msync:EXPR,PAGES,FLAGS  msync(EXPR, PAGES pages, FLAGS) -> ret, errno
 *   mincore:EXPR,PAGES      mincore(EXPR, PAGES pages) -> ret, errno, resident [bool] or null
 *   vmflags:EXPR   the VmFlags of the /proc/self/smaps entry covering EXPR -> [flag] or null
 *   status:NAME    the value of the NAME: line of /proc/self/status -> "text" or null
 *   fork:STEP;STEP...  fork; the child runs the steps (never another fork) and exits,
 *                  the parent waits -> ret (pid), errno, child [steps], wait_status
 * Every step also reports the break after it ("brk_after"). */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SLOTS 64
#define MAX_MINCORE_PAGES 4096
#define MAX_ARG 256

static char out[1 << 16];
static size_t out_len;
/* One /proc file at a time: maps, smaps (about 1 kB per VMA) or status. */
static char proc_text[1 << 18];
static unsigned char residency[MAX_MINCORE_PAGES];
static void *slots[MAX_SLOTS];
static char slot_is_mapping[MAX_SLOTS]; /* from mmap: never handed to free() */
static int slot_count;
static uintptr_t initial_break;
static long page_size;

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

/* Reads a /proc file whole into proc_text (NUL-terminated), without malloc. */
static void read_proc(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t total = 0;
    if (fd >= 0) {
        ssize_t n;
        while ((n = read(fd, proc_text + total, sizeof proc_text - 1 - (size_t)total)) > 0)
            total += n;
        close(fd);
    }
    proc_text[total] = '\0';
}

/* For a maps or smaps header line "lo-hi perms ...": whether it covers addr. */
static int header_covers(const char *line, uintptr_t addr, unsigned long long *lo, unsigned long long *hi,
                         char **rest)
{
    char *end;
    *lo = strtoull(line, &end, 16);
    if (end == line || *end != '-')
        return -1; /* not a header line */
    *hi = strtoull(end + 1, &end, 16);
    *rest = end;
    return addr >= *lo && addr < *hi;
}

static void emit_vma(uintptr_t addr)
{
    read_proc("/proc/self/maps");
    for (char *line = proc_text; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *end;
        unsigned long long lo, hi;
        if (header_covers(line, addr, &lo, &hi, &end) == 1) {
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

/* The VmFlags line of the smaps entry covering addr, as a JSON list; null when no
 * entry covers addr (an entry without a VmFlags line gives an empty list). */
static void emit_vmflags(uintptr_t addr)
{
    read_proc("/proc/self/smaps");
    int inside = 0;
    for (char *line = proc_text; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        unsigned long long lo, hi;
        char *rest;
        int covers = header_covers(line, addr, &lo, &hi, &rest);
        if (covers >= 0) {
            if (inside)
                break; /* the covering entry had no VmFlags line */
            inside = covers;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            emit(",\"vmflags\":[");
            int first = 1;
            for (char *flag = line + 8; *flag;) {
                while (*flag == ' ')
                    flag++;
                size_t length = strcspn(flag, " ");
                if (length) {
                    if (!first)
                        emit(",");
                    emit_string(flag, length);
                    first = 0;
                }
                flag += length;
            }
            emit("]");
            return;
        }
        line = next;
    }
    emit(inside ? ",\"vmflags\":[]" : ",\"vmflags\":null");
}

/* The text after "NAME:" in /proc/self/status, leading blanks dropped; null if absent. */
static void emit_status(const char *name)
{
    size_t length = strlen(name);
    read_proc("/proc/self/status");
    for (char *line = proc_text; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, name, length) == 0 && line[length] == ':') {
            char *value = line + length + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            emit(",\"status\":");
            emit_string(value, strlen(value));
            return;
        }
        line = next;
    }
    emit(",\"status\":null");
}

/* Splits arg at each sep into at most max parts of fewer than MAX_ARG bytes each;
 * returns the number of parts, or -1 when there are more or one is too long. */
static int split(const char *arg, char sep, char parts[][MAX_ARG], int max)
{
    int count = 0;
    for (const char *part = arg;; count++) {
        const char *end = strchr(part, sep);
        size_t length = end ? (size_t)(end - part) : strlen(part);
        if (count == max || length >= MAX_ARG)
            return -1;
        memcpy(parts[count], part, length);
        parts[count][length] = '\0';
        if (!end)
            return count + 1;
        part = end + 1;
    }
}

/* A page count whose length in bytes fits a size_t. */
static int parse_pages(const char *text, size_t *pages)
{
    long long number;
    if (!parse_number(text, &number) || number < 0 || (unsigned long long)number > SIZE_MAX / (size_t)page_size)
        return 0;
    *pages = (size_t)number;
    return 1;
}

/* A number that fits an int (flags). */
static int parse_int(const char *text, int *value)
{
    long long number;
    if (!parse_number(text, &number) || number < INT_MIN || number > INT_MAX)
        return 0;
    *value = (int)number;
    return 1;
}

static void emit_result(long ret, int saved_errno)
{
    emit(",\"ret\":");
    emit_int(ret);
    emit(",\"errno\":");
    emit_int(ret == -1 ? saved_errno : 0);
}

static int run_steps(const char *const *steps, int count, int nested);

/* Stores a malloc or mmap result in the next slot (the caller checked there is one)
 * and records "slot" and "ret". */
static void keep_in_slot(void *ret, int is_mapping)
{
    emit(",\"slot\":");
    emit_int(slot_count);
    slot_is_mapping[slot_count] = (char)is_mapping;
    slots[slot_count++] = ret;
    emit(",\"ret\":");
    emit_uint((uintptr_t)ret);
}

/* Splits "LEFT=RIGHT" at the first '=' into left (fewer than size bytes) and right. */
static int split_equals(const char *arg, char *left, size_t size, const char **right)
{
    const char *equals = strchr(arg, '=');
    if (!equals || (size_t)(equals - arg) >= size)
        return 0;
    memcpy(left, arg, (size_t)(equals - arg));
    left[equals - arg] = '\0';
    *right = equals + 1;
    return 1;
}

/* --- the steps: each parses its argument (returning 0, having emitted nothing, when it
 * does not parse), runs, and emits its fields after the "step" one. --- */

static int step_sbrk(const char *arg)
{
    long long number;
    if (!parse_number(arg, &number))
        return 0;
    void *ret = sbrk((intptr_t)number);
    int saved = errno;
    emit(",\"ret\":");
    emit_uint((uintptr_t)ret);
    emit(",\"errno\":");
    emit_int(ret == (void *)-1 ? saved : 0);
    return 1;
}

static int step_brk(const char *arg)
{
    uintptr_t addr;
    if (!parse_expr(arg, &addr))
        return 0;
    int ret = brk((void *)addr);
    emit_result(ret, errno);
    return 1;
}

static int step_rawbrk(const char *arg)
{
    uintptr_t addr;
    if (!parse_expr(arg, &addr))
        return 0;
    long ret = syscall(SYS_brk, addr);
    emit(",\"ret\":");
    emit_uint((unsigned long)ret);
    return 1;
}

static int step_read(const char *arg)
{
    uintptr_t addr;
    memsys_fault fault;
    uint8_t value = 0;
    if (!parse_expr(arg, &addr))
        return 0;
    emit(",\"addr\":");
    emit_uint(addr);
    if (memsys_probe_read(addr, &fault, &value)) {
        emit(",\"fault\":");
        emit_fault(&fault);
    } else {
        emit(",\"fault\":null,\"value\":");
        emit_int(value);
    }
    return 1;
}

static int step_write(const char *arg)
{
    char target[128];
    const char *byte;
    uintptr_t addr;
    long long number;
    memsys_fault fault;
    if (!split_equals(arg, target, sizeof target, &byte) || !parse_expr(target, &addr) ||
        !parse_number(byte, &number))
        return 0;
    emit(",\"addr\":");
    emit_uint(addr);
    emit(",\"fault\":");
    if (memsys_probe_write(addr, (uint8_t)number, &fault))
        emit_fault(&fault);
    else
        emit("null");
    return 1;
}

static int step_rlimit_data(const char *arg)
{
    long long number;
    if (!parse_number(arg, &number))
        return 0;
    struct rlimit limit;
    getrlimit(RLIMIT_DATA, &limit);
    limit.rlim_cur = (rlim_t)number;
    int ret = setrlimit(RLIMIT_DATA, &limit);
    emit_result(ret, errno);
    return 1;
}

static int step_malloc(const char *arg)
{
    long long number;
    if (!parse_number(arg, &number) || slot_count == MAX_SLOTS)
        return 0;
    keep_in_slot(malloc((size_t)number), 0);
    return 1;
}

static int step_free(const char *arg)
{
    long long number;
    if (!parse_number(arg, &number) || number < 0 || number >= slot_count || slot_is_mapping[number])
        return 0;
    free(slots[number]);
    slots[number] = NULL;
    return 1;
}

static int step_mallopt(const char *arg)
{
    char left[32];
    const char *right;
    long long parameter, value;
    if (!split_equals(arg, left, sizeof left, &right) || !parse_number(left, &parameter) ||
        !parse_number(right, &value))
        return 0;
    emit(",\"ret\":");
    emit_int(mallopt((int)parameter, (int)value));
    return 1;
}

static int step_trim(const char *arg)
{
    long long number;
    if (!parse_number(arg, &number))
        return 0;
    emit(",\"ret\":");
    emit_int(malloc_trim((size_t)number));
    return 1;
}

static int step_vma(const char *arg)
{
    uintptr_t addr;
    if (!parse_expr(arg, &addr))
        return 0;
    emit(",\"addr\":");
    emit_uint(addr);
    emit_vma(addr);
    return 1;
}

static int step_mmap(const char *arg)
{
    size_t pages;
    if (!parse_pages(arg, &pages) || slot_count == MAX_SLOTS)
        return 0;
    void *ret = mmap(NULL, pages * (size_t)page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int saved = errno;
    keep_in_slot(ret, 1);
    emit(",\"errno\":");
    emit_int(ret == MAP_FAILED ? saved : 0);
    return 1;
}

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static int step_mmapat(const char *arg)
{
    char parts[2][MAX_ARG];
    uintptr_t addr;
    size_t pages;
    if (split(arg, ',', parts, 2) != 2 || !parse_expr(parts[0], &addr) || !parse_pages(parts[1], &pages) ||
        slot_count == MAX_SLOTS)
        return 0;
    void *ret = mmap((void *)addr, pages * (size_t)page_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    int saved = errno;
    keep_in_slot(ret, 1);
    emit(",\"errno\":");
    emit_int(ret == MAP_FAILED ? saved : 0);
    return 1;
}

static int step_mlockall(const char *arg)
{
    int flags;
    if (!parse_int(arg, &flags))
        return 0;
    int ret = mlockall(flags);
    emit_result(ret, errno);
    return 1;
}

static int step_munlockall(const char *arg)
{
    (void)arg;
    int ret = munlockall();
    emit_result(ret, errno);
    return 1;
}

static int step_msync(const char *arg)
{
    char parts[3][MAX_ARG];
    uintptr_t addr;
    size_t pages;
    int flags;
    if (split(arg, ',', parts, 3) != 3 || !parse_expr(parts[0], &addr) || !parse_pages(parts[1], &pages) ||
        !parse_int(parts[2], &flags))
        return 0;
    int ret = msync((void *)addr, pages * (size_t)page_size, flags);
    emit_result(ret, errno);
    return 1;
}

static int step_mincore(const char *arg)
{
    char parts[2][MAX_ARG];
    uintptr_t addr;
    size_t pages;
    if (split(arg, ',', parts, 2) != 2 || !parse_expr(parts[0], &addr) || !parse_pages(parts[1], &pages) ||
        pages > MAX_MINCORE_PAGES)
        return 0;
    int ret = mincore((void *)addr, pages * (size_t)page_size, residency);
    emit_result(ret, errno);
    emit(",\"resident\":");
    if (ret != 0) {
        emit("null");
        return 1;
    }
    emit("[");
    for (size_t i = 0; i < pages; i++)
        emit(i ? ((residency[i] & 1) ? ",true" : ",false") : ((residency[i] & 1) ? "true" : "false"));
    emit("]");
    return 1;
}

static int step_vmflags(const char *arg)
{
    uintptr_t addr;
    if (!parse_expr(arg, &addr))
        return 0;
    emit(",\"addr\":");
    emit_uint(addr);
    emit_vmflags(addr);
    return 1;
}

static int step_status(const char *arg)
{
    if (!*arg || strlen(arg) >= 64 || strpbrk(arg, ":\n") != NULL)
        return 0;
    emit_status(arg);
    return 1;
}

/* The fork step: the child runs steps (its own copy of every slot) and writes their
 * JSON to a pipe, the parent copies that into its output and reaps the child. */
static int step_fork(const char *arg)
{
    static char steps[16][MAX_ARG];
    int count = split(arg, ';', steps, 16);
    if (count < 1)
        return 0;
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        emit_result(-1, errno);
        return 1;
    }
    pid_t pid = fork();
    if (pid == -1) {
        int saved = errno;
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        emit_result(-1, saved);
        return 1;
    }
    if (pid == 0) {
        close(pipe_fds[0]);
        size_t mark = out_len;
        const char *listed[16];
        for (int i = 0; i < count; i++)
            listed[i] = steps[i];
        int status = run_steps(listed, count, 1);
        for (size_t done = mark; done < out_len;) {
            ssize_t n = write(pipe_fds[1], out + done, out_len - done);
            if (n <= 0)
                _exit(1);
            done += (size_t)n;
        }
        _exit(status);
    }
    close(pipe_fds[1]);
    emit(",\"ret\":");
    emit_int(pid);
    emit(",\"errno\":0,\"child\":[");
    /* Drain to end of file even when out is full, so the child never blocks on the pipe. */
    char spill[512];
    ssize_t n;
    do {
        size_t room = sizeof out - 1 - out_len;
        n = room ? read(pipe_fds[0], out + out_len, room) : read(pipe_fds[0], spill, sizeof spill);
        if (n > 0 && room)
            out_len += (size_t)n;
    } while (n > 0 || (n == -1 && errno == EINTR));
    close(pipe_fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
        ;
    emit("],\"wait_status\":");
    emit_int(status);
    return 1;
}

/* Every step: its name, its argument's form (as brk.py's errors spell it; NULL for the
 * one step that takes none, and no colon), whether a forked child may run it, and the
 * function that parses the argument and runs it. `memsys-brk-helper --steps` prints
 * this table, which tests/test_brk_helper.py compares with brk.py's. */
static const struct step_kind {
    const char *name;
    const char *arg;
    int in_fork;
    int (*run)(const char *arg);
} step_kinds[] = {
    {"sbrk", "N", 1, step_sbrk},
    {"brk", "EXPR", 1, step_brk},
    {"rawbrk", "EXPR", 1, step_rawbrk},
    {"read", "EXPR", 1, step_read},
    {"write", "EXPR=BYTE", 1, step_write},
    {"rlimit-data", "N", 1, step_rlimit_data},
    {"malloc", "N", 1, step_malloc},
    {"free", "SLOT", 1, step_free},
    {"mallopt", "PARAM=VALUE", 1, step_mallopt},
    {"trim", "N", 1, step_trim},
    {"vma", "EXPR", 1, step_vma},
    {"mmap", "PAGES", 1, step_mmap},
    {"mmapat", "EXPR,PAGES", 1, step_mmapat},
    {"mlockall", "FLAGS", 1, step_mlockall},
    {"munlockall", NULL, 1, step_munlockall},
    {"msync", "EXPR,PAGES,FLAGS", 1, step_msync},
    {"mincore", "EXPR,PAGES", 1, step_mincore},
    {"vmflags", "EXPR", 1, step_vmflags},
    {"status", "NAME", 1, step_status},
    {"fork", "STEP;STEP...", 0, step_fork},
};
#define STEP_KINDS (sizeof step_kinds / sizeof step_kinds[0])

/* Runs one step and emits its record; 0 (nothing emitted) when the step is unknown,
 * has or lacks an argument wrongly, is a fork inside a fork, or does not parse. */
static int run_step(const char *step, int nested)
{
    const char *colon = strchr(step, ':');
    size_t name_length = colon ? (size_t)(colon - step) : strlen(step);
    const struct step_kind *kind = NULL;
    for (size_t i = 0; i < STEP_KINDS && !kind; i++)
        if (strlen(step_kinds[i].name) == name_length && strncmp(step, step_kinds[i].name, name_length) == 0)
            kind = &step_kinds[i];
    if (!kind || !colon != !kind->arg || (nested && !kind->in_fork))
        return 0;
    size_t rollback = out_len;
    emit("{\"step\":");
    emit_string(step, strlen(step));
    errno = 0;
    if (!kind->run(colon ? colon + 1 : "")) {
        out_len = rollback;
        return 0;
    }
    emit(",\"brk_after\":");
    emit_uint((uintptr_t)syscall(SYS_brk, 0));
    emit("}");
    return 1;
}

/* Runs the steps in order, their JSON records separated by commas; a step that does
 * not parse ends the run with a record saying so. The exit status: 0, or 2 then. */
static int run_steps(const char *const *steps, int count, int nested)
{
    for (int i = 0; i < count; i++) {
        if (i)
            emit(",");
        if (!run_step(steps[i], nested)) {
            emit("{\"step\":");
            emit_string(steps[i], strlen(steps[i]));
            emit(",\"error\":\"cannot parse step\"}");
            return 2;
        }
    }
    return 0;
}

/* --steps: the step table as JSON, {"steps":[{"name":..., "arg":... or null, "in_fork":bool}...]}. */
static void emit_step_kinds(void)
{
    emit("{\"steps\":[");
    for (size_t i = 0; i < STEP_KINDS; i++) {
        emit(i ? ",{\"name\":" : "{\"name\":");
        emit_string(step_kinds[i].name, strlen(step_kinds[i].name));
        emit(",\"arg\":");
        if (step_kinds[i].arg)
            emit_string(step_kinds[i].arg, strlen(step_kinds[i].arg));
        else
            emit("null");
        emit(step_kinds[i].in_fork ? ",\"in_fork\":true}" : ",\"in_fork\":false}");
    }
    emit("]}\n");
}

int main(int argc, char **argv)
{
    int status = 0;
    if (argc == 2 && strcmp(argv[1], "--steps") == 0) {
        emit_step_kinds();
    } else {
        initial_break = (uintptr_t)sbrk(0);
        page_size = sysconf(_SC_PAGESIZE);
        emit("{\"pid\":");
        emit_int(getpid());
        emit(",\"page_size\":");
        emit_int(page_size);
        emit(",\"start\":");
        emit_uint(initial_break);
        emit(",\"steps\":[");
        status = run_steps((const char *const *)argv + 1, argc - 1, 0);
        emit("]}\n");
    }
    ssize_t written = write(1, out, out_len);
    return written == (ssize_t)out_len ? status : 1;
}
