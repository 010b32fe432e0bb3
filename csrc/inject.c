/* memsys-inject: run a command with chosen memory system calls made to misbehave.
 *
 * The project's fault-injection harness (tests/fault_injection.py) starts the
 * conformance suite under this supervisor. It is a test tool, not part of the
 * plugin's user-facing surface.
 *
 *   memsys-inject [--timeout SECONDS] [--status FILE] [--rule SPEC]... -- COMMAND [ARG]...
 *
 * Supervision (always): the command runs as this process's child; this process is a
 * child subreaper, so every descendant stays in its tree. When the command ends, on
 * --timeout, or on SIGTERM/SIGINT/SIGHUP, every remaining descendant is killed with
 * SIGKILL and reaped: nothing traced or filtered is left behind. --status FILE gets
 * "exited N", "signaled N" or "timeout" on its first line, then one line per rule:
 * "rule I matched M applied A". The exit status is the command's, 128+N when a
 * signal killed it, 124 on timeout.
 *
 * Injection (when rules are given; x86_64 only): the child installs a seccomp filter
 * that answers the rules' system calls with SECCOMP_RET_TRACE, and the whole process
 * tree is traced (PTRACE_O_TRACEFORK/VFORK/CLONE/EXEC/SECCOMP, EXITKILL), so the
 * tracer stops only at those calls. A rule is comma-separated KEY=VALUE:
 *   nr=N               the system call number (required)
 *   if=A:MASK:VALUE    only when (arg A & MASK) == VALUE (up to 4)
 *   path=A:PREFIX      only when the string at arg A starts with PREFIX
 *   caller=ffi         only when the caller's stack (4 KiB from the stack pointer) holds a
 *                      return address into libffi: the call came through ctypes (the
 *                      suite's libc door), not from the interpreter's own allocator
 *   exe=SUBSTRING      only in processes whose /proc/PID/exe contains SUBSTRING
 *   every=N            apply to every Nth matching call only (default 1)
 * at system-call entry:
 *   clear=A:MASK  or=A:MASK  set=A:VALUE
 *   scale=A:NUM:DEN:ALIGN   arg A := arg A * NUM / DEN rounded down to ALIGN; a non-zero
 *                      argument that scales to 0 makes the call act on nothing (skipped, 0)
 *   skip=V             do not perform the call; it returns V (a negative V is -errno)
 * at system-call exit:
 *   ret=V              the call returns V
 *   retadd=D           a successful call (not -4095..-1) returns its value + D
 *   errno=FROM:TO      a call failing with FROM fails with TO instead
 * The first matching rule (after every=) is applied.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 32
#define MAX_CONDS 4
#define MAX_PIDS 8192
#define STACK_SCAN 4096

struct cond { int arg; uint64_t mask, value; };

struct rule {
    long nr;
    struct cond conds[MAX_CONDS];
    int nconds;
    int path_arg;
    char path_prefix[128];
    int caller_ffi;
    char exe[128];
    long every;
    int clear_arg; uint64_t clear_mask;
    int or_arg; uint64_t or_mask;
    int set_arg; uint64_t set_value;
    int scale_arg; long scale_num, scale_den; uint64_t scale_align;
    int skip; long skip_ret;
    int has_ret; long ret;
    int has_retadd; long retadd;
    int has_errmap; long err_from, err_to;
    long matched, applied;
};

struct tracee {
    pid_t pid;
    int seen;            /* its first (attach) SIGSTOP was swallowed */
    int pending;         /* rule index whose exit action is due, or -1 */
    int skip_ret_set; long skip_ret;
    int ffi_known; int nffi; uint64_t ffi_lo[8], ffi_hi[8];
};

static struct rule rules[MAX_RULES];
static int nrules;
static struct tracee tracees[MAX_PIDS];
static volatile sig_atomic_t timed_out, terminated;

static void die(const char *what) {
    fprintf(stderr, "memsys-inject: %s: %s\n", what, strerror(errno));
    exit(125);
}

static void usage(const char *why) {
    fprintf(stderr, "memsys-inject: %s\nusage: memsys-inject [--timeout S] [--status FILE] "
                    "[--rule SPEC]... -- COMMAND [ARG]...\n", why);
    exit(125);
}

static long parse_long(const char *s, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || end == s) {
        fprintf(stderr, "memsys-inject: bad number %s in %s\n", s, what);
        exit(125);
    }
    return v;
}

static uint64_t parse_u64(const char *s, const char *what) {
    char *end;
    errno = 0;
    uint64_t v = s[0] == '-' ? (uint64_t)strtoll(s, &end, 0) : strtoull(s, &end, 0);
    if (errno || end == s) {
        fprintf(stderr, "memsys-inject: bad number %s in %s\n", s, what);
        exit(125);
    }
    return v;
}

/* split "a:b:c" into at most n fields (in place) */
static int fields(char *s, char **out, int n) {
    int k = 0;
    while (k < n) {
        out[k++] = s;
        char *c = strchr(s, ':');
        if (!c) break;
        *c = 0;
        s = c + 1;
    }
    return k;
}

static void parse_rule(const char *spec) {
    if (nrules == MAX_RULES) usage("too many rules");
    struct rule *r = &rules[nrules++];
    memset(r, 0, sizeof *r);
    r->nr = -1; r->path_arg = r->clear_arg = r->or_arg = r->set_arg = r->scale_arg = -1; r->every = 1;
    char *copy = strdup(spec), *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) usage("a rule item is KEY=VALUE");
        *eq = 0;
        char *key = item, *val = eq + 1, *f[4];
        int n;
        if (!strcmp(key, "nr")) r->nr = parse_long(val, spec);
        else if (!strcmp(key, "if")) {
            if (r->nconds == MAX_CONDS || fields(val, f, 3) != 3) usage("if=ARG:MASK:VALUE");
            r->conds[r->nconds++] = (struct cond){(int)parse_long(f[0], spec), parse_u64(f[1], spec),
                                                  parse_u64(f[2], spec)};
        } else if (!strcmp(key, "path")) {
            if (fields(val, f, 2) != 2) usage("path=ARG:PREFIX");
            r->path_arg = (int)parse_long(f[0], spec);
            snprintf(r->path_prefix, sizeof r->path_prefix, "%s", f[1]);
        } else if (!strcmp(key, "caller")) {
            if (strcmp(val, "ffi")) usage("caller=ffi");
            r->caller_ffi = 1;
        } else if (!strcmp(key, "exe")) snprintf(r->exe, sizeof r->exe, "%s", val);
        else if (!strcmp(key, "every")) r->every = parse_long(val, spec);
        else if (!strcmp(key, "clear")) {
            if (fields(val, f, 2) != 2) usage("clear=ARG:MASK");
            r->clear_arg = (int)parse_long(f[0], spec); r->clear_mask = parse_u64(f[1], spec);
        } else if (!strcmp(key, "or")) {
            if (fields(val, f, 2) != 2) usage("or=ARG:MASK");
            r->or_arg = (int)parse_long(f[0], spec); r->or_mask = parse_u64(f[1], spec);
        } else if (!strcmp(key, "set")) {
            if (fields(val, f, 2) != 2) usage("set=ARG:VALUE");
            r->set_arg = (int)parse_long(f[0], spec); r->set_value = parse_u64(f[1], spec);
        } else if (!strcmp(key, "scale")) {
            if ((n = fields(val, f, 4)) != 4) usage("scale=ARG:NUM:DEN:ALIGN");
            r->scale_arg = (int)parse_long(f[0], spec); r->scale_num = parse_long(f[1], spec);
            r->scale_den = parse_long(f[2], spec); r->scale_align = parse_u64(f[3], spec);
            if (r->scale_den <= 0 || r->scale_align == 0) usage("scale: DEN and ALIGN must be positive");
        } else if (!strcmp(key, "skip")) { r->skip = 1; r->skip_ret = parse_long(val, spec); }
        else if (!strcmp(key, "ret")) { r->has_ret = 1; r->ret = parse_long(val, spec); }
        else if (!strcmp(key, "retadd")) { r->has_retadd = 1; r->retadd = parse_long(val, spec); }
        else if (!strcmp(key, "errno")) {
            if (fields(val, f, 2) != 2) usage("errno=FROM:TO");
            r->has_errmap = 1; r->err_from = parse_long(f[0], spec); r->err_to = parse_long(f[1], spec);
        } else {
            fprintf(stderr, "memsys-inject: unknown rule key %s\n", key);
            exit(125);
        }
    }
    free(copy);
    if (r->nr < 0) usage("a rule needs nr=");
    if (r->every < 1) usage("every= must be >= 1");
}

/* --- the process tree ------------------------------------------------------------ */

static struct tracee *tracee(pid_t pid, int create) {
    struct tracee *free_slot = NULL;
    for (int i = 0; i < MAX_PIDS; i++) {
        if (tracees[i].pid == pid) return &tracees[i];
        if (!free_slot && tracees[i].pid == 0) free_slot = &tracees[i];
    }
    if (!create || !free_slot) return NULL;
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->pid = pid;
    free_slot->pending = -1;
    return free_slot;
}

static void forget(pid_t pid) {
    struct tracee *t = tracee(pid, 0);
    if (t) t->pid = 0;
}

/* SIGKILL every descendant of this process (all of them are in its tree: it is a
 * subreaper), repeatedly until a scan of /proc finds none left alive. */
static int kill_descendants(void) {
    int killed = 0;
    pid_t me = getpid();
    for (int round = 0; round < 100; round++) {
        static pid_t pids[65536], ppids[65536];
        int n = 0;
        DIR *d = opendir("/proc");
        if (!d) return killed;
        struct dirent *e;
        while ((e = readdir(d)) && n < 65536) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            char path[300], buf[512];
            snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            ssize_t len = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (len <= 0) continue;
            buf[len] = 0;
            char *close_paren = strrchr(buf, ')');
            char state;
            int ppid;
            if (!close_paren || sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2) continue;
            if (state == 'Z' || state == 'X') continue;
            pids[n] = atoi(e->d_name);
            ppids[n++] = ppid;
        }
        closedir(d);
        /* descendants: fixpoint over the parent relation */
        static char mine[65536];
        memset(mine, 0, (size_t)n);
        int changed = 1, found = 0;
        while (changed) {
            changed = 0;
            for (int i = 0; i < n; i++) {
                if (mine[i]) continue;
                int parent_mine = ppids[i] == me;
                for (int j = 0; j < n && !parent_mine; j++)
                    if (mine[j] && pids[j] == ppids[i]) parent_mine = 1;
                if (parent_mine) { mine[i] = 1; changed = 1; }
            }
        }
        for (int i = 0; i < n; i++)
            if (mine[i]) { kill(pids[i], SIGKILL); found++; }
        killed += found;
        if (!found) break;
        /* reap what died, so the next scan does not see it */
        int status;
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
        while (waitpid(-1, &status, WNOHANG | __WALL) > 0) {}
    }
    return killed;
}

static void on_alarm(int sig) { (void)sig; timed_out = 1; }
static void on_term(int sig) { (void)sig; terminated = 1; }

/* --- the filter the child installs -------------------------------------------------- */

static void install_filter(void) {
    struct sock_filter prog[8 + 2 * MAX_RULES];
    int n = 0;
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (int i = 0; i < nrules; i++) {
        prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)rules[i].nr, 0, 1);
        prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
    }
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog fprog = {(unsigned short)n, prog};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) {
        if (errno != EACCES) die("seccomp filter");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) die("seccomp filter");
    }
}

/* --- matching ------------------------------------------------------------------------ */

static void load_ffi_ranges(struct tracee *t) {
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/maps", t->pid);
    FILE *f = fopen(path, "re");
    t->ffi_known = 1;
    t->nffi = 0;
    if (!f) return;
    while (fgets(line, sizeof line, f) && t->nffi < 8) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3) continue;
        if (perms[2] != 'x' || !strstr(line, "/libffi")) continue;
        t->ffi_lo[t->nffi] = lo;
        t->ffi_hi[t->nffi++] = hi;
    }
    fclose(f);
}

static int debug;

static int caller_is_ffi(struct tracee *t, uint64_t sp) {
    if (!t->ffi_known || !t->nffi) load_ffi_ranges(t);  /* ctypes may be imported later */
    if (debug) fprintf(stderr, "memsys-inject: pid %d: %d libffi ranges\n", t->pid, t->nffi);
    if (!t->nffi) return 0;
    uint64_t words[STACK_SCAN / 8];
    size_t want = STACK_SCAN;
    ssize_t got = -1;
    while (want >= 64) {  /* the stack may end before STACK_SCAN bytes */
        struct iovec local = {words, want}, remote = {(void *)sp, want};
        got = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
        if (got > 0) break;
        want /= 2;
    }
    if (debug) fprintf(stderr, "memsys-inject: pid %d: read %zd bytes of stack at %#lx\n", t->pid, got,
                       (unsigned long)sp);
    if (got <= 0) return 0;
    for (size_t i = 0; i < (size_t)got / 8; i++)
        for (int k = 0; k < t->nffi; k++)
            if (words[i] >= t->ffi_lo[k] && words[i] < t->ffi_hi[k]) return 1;
    if (debug) fprintf(stderr, "memsys-inject: pid %d: no return address in %#lx-%#lx\n", t->pid,
                       (unsigned long)t->ffi_lo[0], (unsigned long)t->ffi_hi[0]);
    return 0;
}

static int path_matches(pid_t pid, uint64_t addr, const char *prefix) {
    char buf[128];
    size_t want = strlen(prefix);
    if (!want) return 1;
    struct iovec local = {buf, want}, remote = {(void *)addr, want};
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != (ssize_t)want) return 0;
    return memcmp(buf, prefix, want) == 0;
}

static uint64_t *arg_slot(struct user_regs_struct *r, int i) {
    switch (i) {
    case 0: return (uint64_t *)&r->rdi;
    case 1: return (uint64_t *)&r->rsi;
    case 2: return (uint64_t *)&r->rdx;
    case 3: return (uint64_t *)&r->r10;
    case 4: return (uint64_t *)&r->r8;
    case 5: return (uint64_t *)&r->r9;
    default: return NULL;
    }
}

static int matches(struct rule *r, struct tracee *t, struct user_regs_struct *regs) {
    if ((long)regs->orig_rax != r->nr) return 0;
    for (int c = 0; c < r->nconds; c++) {
        uint64_t *a = arg_slot(regs, r->conds[c].arg);
        if (!a || (*a & r->conds[c].mask) != r->conds[c].value) return 0;
    }
    if (r->path_arg >= 0) {
        uint64_t *a = arg_slot(regs, r->path_arg);
        if (!a || !path_matches(t->pid, *a, r->path_prefix)) return 0;
    }
    if (r->exe[0]) {
        char path[64], target[4096];
        snprintf(path, sizeof path, "/proc/%d/exe", t->pid);
        ssize_t len = readlink(path, target, sizeof target - 1);
        if (len <= 0) return 0;
        target[len] = 0;
        if (!strstr(target, r->exe)) return 0;
    }
    if (r->caller_ffi && !caller_is_ffi(t, regs->rsp)) return 0;
    return 1;
}

/* At the seccomp stop (system-call entry). Returns 1 when an exit action is due. */
static int on_entry(struct tracee *t) {
    struct user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, t->pid, 0, &regs) != 0) return 0;
    for (int i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        if (!matches(r, t, &regs)) continue;
        r->matched++;
        if (r->matched % r->every) continue;
        r->applied++;
        int changed = 0;
        t->skip_ret_set = 0;
        if (r->clear_arg >= 0) { *arg_slot(&regs, r->clear_arg) &= ~r->clear_mask; changed = 1; }
        if (r->or_arg >= 0) { *arg_slot(&regs, r->or_arg) |= r->or_mask; changed = 1; }
        if (r->set_arg >= 0) { *arg_slot(&regs, r->set_arg) = r->set_value; changed = 1; }
        if (r->scale_arg >= 0) {
            uint64_t *a = arg_slot(&regs, r->scale_arg);
            uint64_t v = (uint64_t)((__int128)*a * r->scale_num / r->scale_den);
            v -= v % r->scale_align;
            if (v == 0 && *a != 0) {
                t->skip_ret_set = 1;
                t->skip_ret = 0;
            }
            *a = v;
            changed = 1;
        }
        if (r->skip) { t->skip_ret_set = 1; t->skip_ret = r->skip_ret; }
        if (t->skip_ret_set) { regs.orig_rax = (uint64_t)-1; changed = 1; }
        if (changed && ptrace(PTRACE_SETREGS, t->pid, 0, &regs) != 0) return 0;
        if (t->skip_ret_set || r->has_ret || r->has_retadd || r->has_errmap) {
            t->pending = i;
            return 1;
        }
        return 0;
    }
    return 0;
}

static void on_exit_stop(struct tracee *t) {
    struct rule *r = &rules[t->pending];
    struct user_regs_struct regs;
    t->pending = -1;
    if (ptrace(PTRACE_GETREGS, t->pid, 0, &regs) != 0) return;
    long ret = (long)regs.rax;
    if (t->skip_ret_set) ret = t->skip_ret;
    if (r->has_errmap && ret == -r->err_from) ret = -r->err_to;
    if (r->has_ret) ret = r->ret;
    if (r->has_retadd && !(ret < 0 && ret >= -4095)) ret += r->retadd;
    t->skip_ret_set = 0;
    regs.rax = (uint64_t)ret;
    ptrace(PTRACE_SETREGS, t->pid, 0, &regs);
}

/* --- main ------------------------------------------------------------------------------ */

static void write_status(const char *path, const char *line) {
    if (!path) return;
    FILE *f = fopen(path, "we");
    if (!f) return;
    fprintf(f, "%s\n", line);
    for (int i = 0; i < nrules; i++) fprintf(f, "rule %d matched %ld applied %ld\n", i, rules[i].matched,
                                            rules[i].applied);
    fclose(f);
}

int main(int argc, char **argv) {
    long timeout = 0;
    const char *status_path = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        if (i + 1 >= argc) usage("an option needs a value");
        if (!strcmp(argv[i], "--timeout")) timeout = parse_long(argv[++i], "--timeout");
        else if (!strcmp(argv[i], "--status")) status_path = argv[++i];
        else if (!strcmp(argv[i], "--rule")) parse_rule(argv[++i]);
        else usage("unknown option");
    }
    if (i >= argc) usage("no command");
    char **command = &argv[i];
    int tracing = nrules > 0;
    debug = getenv("MEMSYS_INJECT_DEBUG") != NULL;
#if !defined(__x86_64__)
    if (tracing) { fprintf(stderr, "memsys-inject: rules need x86_64\n"); return 125; }
#endif
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) die("PR_SET_CHILD_SUBREAPER");
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (tracing) {
            if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) die("PTRACE_TRACEME");
            raise(SIGSTOP);
            install_filter();
        }
        execvp(command[0], command);
        fprintf(stderr, "memsys-inject: exec %s: %s\n", command[0], strerror(errno));
        _exit(127);
    }
    if (timeout > 0) alarm((unsigned)timeout);
    int status;
    if (tracing) {
        if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status)) die("the child did not stop");
        long options = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
                       PTRACE_O_TRACESECCOMP | PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL;
        if (ptrace(PTRACE_SETOPTIONS, child, 0, options) != 0) die("PTRACE_SETOPTIONS");
        tracee(child, 1)->seen = 1;
        ptrace(PTRACE_CONT, child, 0, 0);
    }
    char final[64] = "";
    int code = 125, child_done = 0;
    for (;;) {
        if ((timed_out || terminated) && !final[0]) {
            snprintf(final, sizeof final, timed_out ? "timeout" : "terminated");
            code = timed_out ? 124 : 143;
            kill_descendants();
        }
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;  /* ECHILD: the tree is empty */
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            forget(pid);
            if (pid == child && !child_done) {
                child_done = 1;
                if (!final[0]) {
                    if (WIFEXITED(status)) {
                        code = WEXITSTATUS(status);
                        snprintf(final, sizeof final, "exited %d", code);
                    } else {
                        code = 128 + WTERMSIG(status);
                        snprintf(final, sizeof final, "signaled %d", WTERMSIG(status));
                    }
                }
                /* the command is over: nothing it started may outlive it */
                kill_descendants();
            }
            continue;
        }
        if (!WIFSTOPPED(status)) continue;
        struct tracee *t = tracee(pid, 1);
        int sig = WSTOPSIG(status), event = status >> 16;
        if (!t) { ptrace(PTRACE_CONT, pid, 0, sig == SIGTRAP ? 0 : sig); continue; }
        if (sig == SIGTRAP && event) {
            t->seen = 1;
            if (event == PTRACE_EVENT_EXEC) t->ffi_known = 0;
            if (event == PTRACE_EVENT_SECCOMP && on_entry(t)) {
                ptrace(PTRACE_SYSCALL, pid, 0, 0);
                continue;
            }
            ptrace(PTRACE_CONT, pid, 0, 0);
            continue;
        }
        if (sig == (SIGTRAP | 0x80)) {  /* the system-call exit stop of a rule's call */
            if (t->pending >= 0) on_exit_stop(t);
            ptrace(PTRACE_CONT, pid, 0, 0);
            continue;
        }
        if (sig == SIGSTOP && !t->seen) {  /* a new tracee's attach stop */
            t->seen = 1;
            ptrace(PTRACE_CONT, pid, 0, 0);
            continue;
        }
        t->seen = 1;
        ptrace(PTRACE_CONT, pid, 0, sig);  /* deliver the signal (SIGSEGV, SIGCHLD...) */
    }
    if (!final[0]) snprintf(final, sizeof final, "exited %d", code);
    write_status(status_path, final);
    fprintf(stderr, "memsys-inject: %s\n", final);
    return code;
}
