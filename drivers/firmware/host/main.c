/* Host build of the CBSP/1 reference firmware: the portable core (../cbsp.c) on a PC.
 *
 * The hardware layer is a stub: instead of driving a DAC it records the beam position of every
 * dwell (--dwell-log FILE) and reports each accepted spot table and each blanking on stdout,
 * one line per event, so that a simulator can act on them. The host link is a pseudo terminal
 * (its path is printed first: "PORT /dev/pts/N"), spoken to byte for byte like the board's
 * USB CDC port. The dwell timer is simulated: the main loop runs the sequencer up to the
 * device clock, so dwell times are exact whatever the host's scheduling.
 *
 *   cbsp-host [--link PATH] [--heartbeat-ms N] [--max-spots N] [--cycle-us N] [--serial TEXT]
 *             [--clock real|host] [--sync] [--dwell-log FILE]
 *
 * --clock real : device clock = monotonic time since start (default).
 * --clock host : device clock follows the largest host time received in TABLE/HEARTBEAT frames
 *                (lockstep with a simulator's virtual clock; the heartbeat stays on wall time).
 * --sync       : after each event line wait for one byte on stdin (the simulator applied it),
 *                so that the event reaches the simulated world before the reply reaches the host.
 * Events: "T seq t_effect_us t_host_us cycle_us n x y share ..." (share: the spot's mean dwell,
 * 1/65535 of the cycle) and "B t_us reason".
 * SIGUSR1 puts the device in its FAULT state (as a hardware fault would); SIGTERM/SIGINT stop it.
 */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../cbsp.h"

static cbsp_device dev;
static uint64_t t0_wall;
static uint64_t host_clock_us;
static int clock_host;
static int sync_mode;
static FILE *dwell_log;
static uint64_t dwell_deadline;
static volatile sig_atomic_t stop_flag, fault_flag;
static const char *link_path;

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t hal_now_us(void) { return clock_host ? host_clock_us : wall_us() - t0_wall; }

static int pty_master = -1;

/* ------------------------------------------------------------------ the stub hardware */
void hal_beam_goto(uint16_t x, uint16_t y) { (void)x; (void)y; }
void hal_beam_off(void) {}
void hal_critical_enter(void) {}
void hal_critical_exit(void) {}

void hal_send(const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = write(pty_master, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { struct pollfd w = {pty_master, POLLOUT, 0}; poll(&w, 1, 100); continue; }
            return; /* host side closed: the reply is lost, as on a pulled cable */
        }
        p += k;
        n -= (size_t)k;
    }
}

static void shutdown_now(int code)
{
    hal_beam_off();
    if (link_path) unlink(link_path);
    fflush(stdout);
    if (dwell_log) fclose(dwell_log);
    exit(code);
}

static void wait_applied(void)
{
    fflush(stdout);
    if (!sync_mode) return;
    char c;
    for (;;) {
        ssize_t k = read(STDIN_FILENO, &c, 1);
        if (k == 1) return;
        if (k < 0 && errno == EINTR) continue;
        shutdown_now(0); /* the simulator is gone: stop (beam blanked) */
    }
}

void hal_event_table(uint8_t seq, uint64_t t_effect_us, uint64_t t_host_us, const cbsp_table *t, uint32_t cycle_us)
{
    printf("T %u %" PRIu64 " %" PRIu64 " %" PRIu32 " %u", seq, t_effect_us, t_host_us, cycle_us, t->n);
    for (uint16_t i = 0; i < t->n; i++)
        printf(" %u %u %u", t->spot[i].x, t->spot[i].y, t->spot[i].share);
    putchar('\n');
    wait_applied();
}

void hal_event_blank(uint64_t t_us, int reason)
{
    static const char *names[] = {"command", "empty", "heartbeat", "fault"};
    printf("B %" PRIu64 " %s\n", t_us, names[reason & 3]);
    wait_applied();
}

/* the simulated dwell timer: run the sequencer up to the device clock */
static void run_timer(void)
{
    uint64_t now = hal_now_us();
    uint32_t cycle = dev.cfg.cycle_us;
    if (!dwell_log && !dev.pending && now > dwell_deadline + 4u * (uint64_t)cycle) {
        /* nothing changes between cycles: skip whole cycles at once */
        uint64_t k = (now - dwell_deadline) / cycle - 1u;
        dwell_deadline += k * cycle;
        dev.cycle_start_us += k * cycle;
    }
    while (dwell_deadline <= now) {
        uint64_t t = dwell_deadline;
        uint32_t dwell = cbsp_dwell_next(&dev, t);
        if (dwell_log)
            fprintf(dwell_log, "%" PRIu64 " %u %u %" PRIu32 " %d\n", t, dev.beam_x, dev.beam_y, dwell,
                    dev.beam_on ? 1 : 0);
        dwell_deadline += dwell;
    }
}

void hal_event_frame(uint64_t t_host_us)
{
    if (clock_host && t_host_us > host_clock_us) {
        host_clock_us = t_host_us;
        run_timer();
    }
}

/* ------------------------------------------------------------------ main */
static void on_signal(int sig)
{
    if (sig == SIGUSR1) fault_flag = 1;
    else stop_flag = 1;
}

static long arg_num(const char *name, const char *v, long lo, long hi)
{
    char *end;
    long x = strtol(v ? v : "", &end, 10);
    if (!v || *end || x < lo || x > hi) {
        fprintf(stderr, "cbsp-host: %s must be an integer %ld..%ld, got '%s'\n", name, lo, hi, v ? v : "");
        exit(2);
    }
    return x;
}

int main(int argc, char **argv)
{
    cbsp_config cfg = {.max_spots = CBSP_MAX_SPOTS, .heartbeat_timeout_ms = 250, .cycle_us = 1000};
    const char *serial = "CBSP-HOST-0001", *dwell_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--link")) { link_path = v; i++; }
        else if (!strcmp(a, "--heartbeat-ms")) { cfg.heartbeat_timeout_ms = (uint16_t)arg_num(a, v, 10, 60000); i++; }
        else if (!strcmp(a, "--max-spots")) { cfg.max_spots = (uint16_t)arg_num(a, v, 1, CBSP_MAX_SPOTS); i++; }
        else if (!strcmp(a, "--cycle-us")) { cfg.cycle_us = (uint32_t)arg_num(a, v, 10, 10000000); i++; }
        else if (!strcmp(a, "--serial")) { serial = v ? v : ""; i++; }
        else if (!strcmp(a, "--dwell-log")) { dwell_path = v; i++; }
        else if (!strcmp(a, "--clock")) {
            if (!v || (strcmp(v, "real") && strcmp(v, "host"))) {
                fprintf(stderr, "cbsp-host: --clock must be 'real' or 'host'\n");
                return 2;
            }
            clock_host = !strcmp(v, "host");
            i++;
        }
        else if (!strcmp(a, "--sync")) sync_mode = 1;
        else {
            fprintf(stderr, "cbsp-host: unknown option '%s' (see the comment at the top of host/main.c)\n", a);
            return 2;
        }
    }
    strncpy(cfg.serial, serial, sizeof cfg.serial); /* NUL-padded, not terminated when 16 long */
    if (dwell_path && !(dwell_log = fopen(dwell_path, "w"))) {
        fprintf(stderr, "cbsp-host: cannot write the dwell log %s: %s\n", dwell_path, strerror(errno));
        return 2;
    }
    pty_master = posix_openpt(O_RDWR | O_NOCTTY);
    if (pty_master < 0 || grantpt(pty_master) || unlockpt(pty_master)) {
        fprintf(stderr, "cbsp-host: cannot open a pseudo terminal: %s\n", strerror(errno));
        return 1;
    }
    const char *slave_name = ptsname(pty_master);
    int slave = open(slave_name, O_RDWR | O_NOCTTY); /* kept open: the host may close and reopen */
    struct termios tio;
    if (slave < 0 || tcgetattr(slave, &tio)) {
        fprintf(stderr, "cbsp-host: cannot set up %s: %s\n", slave_name, strerror(errno));
        return 1;
    }
    cfmakeraw(&tio); /* no echo, no CR/LF translation, no flow-control bytes */
    tcsetattr(slave, TCSANOW, &tio);
    fcntl(pty_master, F_SETFL, fcntl(pty_master, F_GETFL) | O_NONBLOCK);
    if (link_path) {
        unlink(link_path);
        if (symlink(slave_name, link_path)) {
            fprintf(stderr, "cbsp-host: cannot create the link %s: %s\n", link_path, strerror(errno));
            return 1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    t0_wall = wall_us();
    cbsp_init(&dev, &cfg);
    printf("PORT %s\n", slave_name);
    fflush(stdout);
    int watch_stdin = !isatty(STDIN_FILENO) && !sync_mode; /* EOF: the parent died */
    uint64_t next_tick = wall_us() + 1000u;
    uint8_t buf[4096];
    while (!stop_flag) {
        struct pollfd fds[2] = {{pty_master, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        uint64_t w = wall_us();
        int timeout_ms = next_tick > w ? (int)((next_tick - w + 999u) / 1000u) : 0;
        int r = poll(fds, watch_stdin ? 2 : 1, timeout_ms);
        if (r < 0 && errno != EINTR) break;
        if (fault_flag) {
            fault_flag = 0;
            cbsp_enter_fault(&dev, hal_now_us());
        }
        if (r > 0 && (fds[0].revents & POLLIN)) {
            ssize_t k = read(pty_master, buf, sizeof buf);
            if (k > 0) {
                run_timer();
                cbsp_rx(&dev, buf, (size_t)k);
            }
        }
        if (watch_stdin && r > 0 && (fds[1].revents & (POLLHUP | POLLIN))) {
            ssize_t k = read(STDIN_FILENO, buf, sizeof buf);
            if (k <= 0) break;
        }
        w = wall_us();
        if (w > next_tick + 100000u) next_tick = w; /* suspended: do not replay the ticks */
        while (w >= next_tick) {
            cbsp_tick_1ms(&dev, hal_now_us());
            next_tick += 1000u;
        }
        if (!clock_host) run_timer();
    }
    shutdown_now(0);
}
