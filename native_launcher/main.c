/* The small layer's executable starts here: this launcher, then the zipapp (build_layer.py).
 *
 * Why native: Lambda starts the function's runtime only once every extension has registered,
 * so all that comes before `register` delays the function's own init. Through sh and the
 * runtime's python3, `register` left 11-16 ms after exec, most of it the interpreter's start;
 * from here it leaves about 1 ms after, and Python's start then runs while Lambda starts the
 * function's runtime (BENCHMARKS.md, round 10).
 *
 * What, in order:
 * 1. Block SIGTERM and SIGINT. The mask survives exec: a stop signal that comes before the
 *    extension's boot stays pending until boot takes it with sigwait, then exits 0.
 * 2. Started as Lambda starts it (no arguments): listen and send `register` as the layer's
 *    own interpreter does (register_early.c, included before this file, says how and which
 *    cases it leaves to Python), and keep those sockets open across exec for boot.py.
 * 3. Exec the runtime's python3 (/var/lang/bin/python3, else PATH's), isolated, with the
 *    program build_layer.py puts in ZIPAPP_MAIN (the zip's __main__.py) and this file's path:
 *    Python reads the zip from the end of this file.
 * Never parses HTTP, never reports to Lambda: all of that stays Python's.
 *
 * Defined by native_launcher/build.py: ZIPAPP_MAIN, PRODUCT_NAME and register_early.c's names.
 */

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUNTIME_PYTHON "/var/lang/bin/python3"

/* register_early() makes its sockets close-on-exec (in the layer's interpreter no exec
 * follows); the ones it named in EARLY_SOCKETS_VARIABLE must reach Python. */
static void keep_early_sockets(void)
{
    const char *next = getenv(EARLY_SOCKETS_VARIABLE);
    char *end;
    while (next != NULL && *next != '\0') {
        long fd = strtol(next, &end, 10);
        if (end == next) {
            break;
        }
        fcntl((int)fd, F_SETFD, 0);
        next = end;
    }
}

int main(int argc, char **argv)
{
    static char self[PATH_MAX];
    sigset_t stop;
    const char *name;
    const char *python;
    char **args;
    ssize_t length;
    int count = 0;

    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);

    if (argc < 1 || argv[0] == NULL) { /* execve() without even a program name */
        fputs(PRODUCT_NAME ": started without argv[0]\n", stderr);
        return 2;
    }
    /* Lambda insists that Lambda-Extension-Name equals the executable's file name, as the
     * path it was started by shows it (a link's name, not its target's). */
    name = strrchr(argv[0], '/');
    name = name != NULL ? name + 1 : argv[0];
    if (argc == 1 && setenv(EARLY_NAME_VARIABLE, name, 1) == 0) {
        register_early();
        keep_early_sockets();
    } else {
        unsetenv(EARLY_SOCKETS_VARIABLE); /* only register_early() may set it */
    }

    /* glibc's malloc: a fixed mmap threshold gives each large buffer (a reply, an upstream
     * answer) back to the kernel when freed, where the dynamic one would keep megabytes in
     * each thread's arena; and two arenas, not 8 per core, for threads that mostly wait. */
    setenv("MALLOC_MMAP_THRESHOLD_", "131072", 0);
    setenv("MALLOC_ARENA_MAX", "2", 0);

    /* The file Python reads: the path it was started by, as boot.py takes its name from it;
     * found on PATH (no slash), the kernel's own record of it. */
    if (strchr(argv[0], '/') == NULL) {
        length = readlink("/proc/self/exe", self, sizeof self - 1);
        if (length > 0) {
            self[length] = '\0';
            argv[0] = self;
        }
    }
    args = calloc((size_t)argc + 6, sizeof *args);
    if (args == NULL) {
        return 1;
    }
    python = access(RUNTIME_PYTHON, X_OK) == 0 ? RUNTIME_PYTHON : "python3";
    args[count++] = (char *)python;
    args[count++] = "-I";
    args[count++] = "-S";
    args[count++] = "-c";
    args[count++] = (char *)ZIPAPP_MAIN;
    for (int i = 0; i < argc; i++) {
        args[count++] = argv[i];
    }
    execvp(python, args);
    fputs(PRODUCT_NAME " needs python3 >= 3.10 at " RUNTIME_PYTHON " or on PATH; none found\n",
          stderr);
    return 127;
}
