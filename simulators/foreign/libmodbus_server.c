/*
 * A small Modbus/TCP server on libmodbus (C, Debian's libmodbus-dev), a stack we did not write,
 * for the collector's interop tests (tests/interop/test_modbus_libmodbus.py builds and runs it).
 *
 * libmodbus does the protocol: MBAP framing, request parsing, the register/bit mapping, the
 * responses and the exception responses (an address outside the mapping gets its own exception 2).
 * This file only fills the mapping, changes some values over time and adds the behaviours of
 * field devices the flags ask for.
 *
 *   libmodbus_server [--port N] [--unit ID]... [--other-units exception|silent]
 *                    [--exception ADDR:CODE]... [--close-on-illegal ADDR]... [--tick-ms MS]
 *
 *   --port N               TCP port on 127.0.0.1 (0, the default: a free one)
 *   --unit ID              answer this unit id (repeatable); each unit has its own mapping, whose
 *                          holding register 110 holds the unit id. Without --unit, every unit id
 *                          is answered from one mapping (libmodbus itself ignores the unit id over TCP)
 *   --other-units MODE     a request to a unit id not given with --unit: `exception` answers
 *                          exception 11 (gateway target device failed to respond, as a gateway
 *                          does), `silent` never answers
 *   --exception ADDR:CODE  a read of holding registers covering ADDR gets exception CODE
 *   --close-on-illegal ADDR  a read of holding registers covering ADDR closes the TCP connection
 *                          without an answer (some devices do this instead of exception 2)
 *   --tick-ms MS           the changing values advance every MS milliseconds (default 50)
 *
 * Register layout (0-based addresses), the same for every unit:
 *   holding  0 int16 -12345;  1 uint16 54321
 *            2, 4, 6, 8     int32 -123456789  in ABCD, CDAB, BADC, DCBA
 *           10,12,14,16     uint32 3000000000 in ABCD, CDAB, BADC, DCBA
 *           18,20,22,24     float32 -1234.5   in ABCD, CDAB, BADC, DCBA
 *           26 int16 raw -2731 (read x0.1: -273.1);  27 uint16 raw 65535 (x0.01 - 100: 555.35)
 *           28 int32 CDAB raw 123456789 (x0.001: 123456.789)
 *           40,42,44,46     float32 -1234.5 written by modbus_set_float_abcd, _badc, _cdab, _dcba
 *          100 tick (uint16, +1 every --tick-ms);  101 int32 CDAB -1000*tick-7;
 *          103 float32 CDAB tick*0.25;  105 int16 raw (tick*37 % 2001) - 1000
 *          110 unit id;  200..209 uint16 1000+i
 *   input    0 tick;  1 float32 ABCD 65.25
 *   coils    0..7 1,0,1,1,0,0,1,0;  8 tick & 1
 *   discrete 0..3 0,1,1,0
 * Holding registers 0..299, input registers 0..99, coils and discrete inputs 0..63 exist; other
 * addresses get libmodbus' exception 2.
 *
 * One JSON line per event on stdout: {"event":"listening","port":N,"libmodbus":"x.y.z"},
 * {"event":"closed","address":A,"count":N}, {"event":"exception","code":C,"address":A,"count":N},
 * {"event":"other_unit","unit":U}.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#define MAX_RULES 16
#define MAX_UNITS 16

enum order { ABCD, CDAB, BADC, DCBA };

struct rule { int address; int code; }; /* code 0: close the connection */

static struct rule rules[MAX_RULES];
static int n_rules;
static int units[MAX_UNITS];
static modbus_mapping_t *maps[MAX_UNITS];
static int n_units;
static int other_units_silent;

static void die(const char *what)
{
    fprintf(stderr, "libmodbus_server: %s\n", what);
    exit(2);
}

/* The big-endian 32-bit value v = A B C D into two registers in the given order. */
static void put32(uint16_t *dst, uint32_t v, enum order o)
{
    uint16_t ab = (uint16_t)(v >> 16), cd = (uint16_t)v;
    uint16_t ba = (uint16_t)((ab << 8) | (ab >> 8)), dc = (uint16_t)((cd << 8) | (cd >> 8));
    switch (o) {
    case ABCD: dst[0] = ab; dst[1] = cd; break;
    case CDAB: dst[0] = cd; dst[1] = ab; break;
    case BADC: dst[0] = ba; dst[1] = dc; break;
    case DCBA: dst[0] = dc; dst[1] = ba; break;
    }
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void fill(modbus_mapping_t *m, int unit)
{
    uint16_t *h = m->tab_registers;
    static const uint8_t coils[8] = {1, 0, 1, 1, 0, 0, 1, 0}, inputs[4] = {0, 1, 1, 0};
    h[0] = (uint16_t)(int16_t)-12345;
    h[1] = 54321;
    for (int o = ABCD; o <= DCBA; o++) {
        put32(h + 2 + 2 * o, (uint32_t)(int32_t)-123456789, o);
        put32(h + 10 + 2 * o, 3000000000u, o);
        put32(h + 18 + 2 * o, float_bits(-1234.5f), o);
    }
    uint32_t i32 = (uint32_t)(int32_t)-123456789;
    MODBUS_SET_INT32_TO_INT16(h, 2, i32); /* libmodbus' own ABCD macro: the same words as put32 */
    h[26] = (uint16_t)(int16_t)-2731;
    h[27] = 65535;
    put32(h + 28, 123456789u, CDAB);
    /* libmodbus' float helpers, by the names it gives them (the test records what they put on the wire). */
    modbus_set_float_abcd(-1234.5f, h + 40);
    modbus_set_float_badc(-1234.5f, h + 42);
    modbus_set_float_cdab(-1234.5f, h + 44);
    modbus_set_float_dcba(-1234.5f, h + 46);
    h[110] = (uint16_t)unit;
    for (int i = 0; i < 10; i++)
        h[200 + i] = (uint16_t)(1000 + i);
    put32(m->tab_input_registers + 1, float_bits(65.25f), ABCD);
    memcpy(m->tab_bits, coils, sizeof coils);
    memcpy(m->tab_input_bits, inputs, sizeof inputs);
}

static void tick(modbus_mapping_t *m, uint16_t t)
{
    uint16_t *h = m->tab_registers;
    h[100] = t;
    put32(h + 101, (uint32_t)(-1000 * (int32_t)t - 7), CDAB);
    put32(h + 103, float_bits((float)t * 0.25f), CDAB);
    h[105] = (uint16_t)(int16_t)((t * 37) % 2001 - 1000);
    m->tab_input_registers[0] = t;
    m->tab_bits[8] = (uint8_t)(t & 1);
}

static modbus_mapping_t *new_map(int unit)
{
    modbus_mapping_t *m = modbus_mapping_new_start_address(0, 64, 0, 64, 0, 300, 0, 100);
    if (m == NULL)
        die("modbus_mapping_new_start_address failed");
    fill(m, unit);
    tick(m, 0);
    return m;
}

/* The mapping for a unit id, or NULL if the server does not answer it. */
static modbus_mapping_t *map_for(int unit)
{
    if (n_units == 1 && units[0] < 0)
        return maps[0];
    for (int i = 0; i < n_units; i++)
        if (units[i] == unit)
            return maps[i];
    return NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
    die("usage: libmodbus_server [--port N] [--unit ID]... [--other-units exception|silent] "
        "[--exception ADDR:CODE]... [--close-on-illegal ADDR]... [--tick-ms MS]");
}

static void add_rule(int address, int code)
{
    if (n_rules == MAX_RULES || address < 0 || address > 65535 || code < 0 || code > 255)
        usage();
    rules[n_rules].address = address;
    rules[n_rules].code = code;
    n_rules++;
}

/* Handle one request on socket fd; returns 0 to keep the connection, -1 to close it. */
static int serve(modbus_t *ctx, const uint8_t *q, int len)
{
    int hl = modbus_get_header_length(ctx);
    int unit = q[hl - 1], fn = q[hl];
    int address = (q[hl + 1] << 8) | q[hl + 2], count = (q[hl + 3] << 8) | q[hl + 4];
    modbus_mapping_t *m = map_for(unit);
    if (m == NULL) {
        printf("{\"event\":\"other_unit\",\"unit\":%d}\n", unit);
        if (other_units_silent)
            return 0;
        return modbus_reply_exception(ctx, q, MODBUS_EXCEPTION_GATEWAY_TARGET) < 0 ? -1 : 0;
    }
    if (fn == MODBUS_FC_READ_HOLDING_REGISTERS) {
        for (int i = 0; i < n_rules; i++) {
            if (rules[i].address < address || rules[i].address >= address + count)
                continue;
            if (rules[i].code == 0) {
                printf("{\"event\":\"closed\",\"address\":%d,\"count\":%d}\n", address, count);
                return -1;
            }
            printf("{\"event\":\"exception\",\"code\":%d,\"address\":%d,\"count\":%d}\n", rules[i].code, address, count);
            return modbus_reply_exception(ctx, q, (unsigned)rules[i].code) < 0 ? -1 : 0;
        }
    }
    return modbus_reply(ctx, q, len, m) < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    int port = 0, tick_ms = 50;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            usage();
        i++;
        if (!strcmp(a, "--port")) {
            port = atoi(v);
        } else if (!strcmp(a, "--unit")) {
            if (n_units == MAX_UNITS)
                usage();
            units[n_units++] = atoi(v);
        } else if (!strcmp(a, "--other-units")) {
            if (strcmp(v, "exception") && strcmp(v, "silent"))
                usage();
            other_units_silent = !strcmp(v, "silent");
        } else if (!strcmp(a, "--exception")) {
            int address, code;
            if (sscanf(v, "%d:%d", &address, &code) != 2 || code < 1)
                usage();
            add_rule(address, code);
        } else if (!strcmp(a, "--close-on-illegal")) {
            add_rule(atoi(v), 0);
        } else if (!strcmp(a, "--tick-ms")) {
            tick_ms = atoi(v) > 0 ? atoi(v) : 50;
        } else {
            usage();
        }
    }
    if (n_units == 0)
        units[n_units++] = -1; /* every unit id, one mapping */
    for (int i = 0; i < n_units; i++)
        maps[i] = new_map(units[i] < 0 ? 1 : units[i]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);

    /* libmodbus' listen wants a port number; 0 lets the kernel choose and getsockname tells which. */
    char port_s[8];
    snprintf(port_s, sizeof port_s, "%d", port);
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    if (ctx == NULL)
        die("modbus_new_tcp failed");
    int listener = modbus_tcp_listen(ctx, 16);
    if (listener < 0) {
        fprintf(stderr, "libmodbus_server: listen on port %s: %s\n", port_s, modbus_strerror(errno));
        return 2;
    }
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    getsockname(listener, (struct sockaddr *)&sa, &sl);
    printf("{\"event\":\"listening\",\"port\":%d,\"libmodbus\":\"%s\"}\n", ntohs(sa.sin_port), LIBMODBUS_VERSION_STRING);

    fd_set all;
    FD_ZERO(&all);
    FD_SET(listener, &all);
    int fdmax = listener;
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    double next_tick = now_ms() + tick_ms;
    uint16_t t = 0;
    for (;;) {
        double wait = next_tick - now_ms();
        long us = wait > 0 ? (long)(wait * 1000) : 0;
        struct timeval tv = {us / 1000000, us % 1000000};
        fd_set ready = all;
        if (select(fdmax + 1, &ready, NULL, NULL, &tv) < 0) {
            if (errno == EINTR)
                continue;
            die("select failed");
        }
        if (now_ms() >= next_tick) {
            t++;
            for (int i = 0; i < n_units; i++)
                tick(maps[i], t);
            next_tick += tick_ms;
            if (next_tick < now_ms())
                next_tick = now_ms() + tick_ms;
        }
        for (int fd = 0; fd <= fdmax; fd++) {
            if (!FD_ISSET(fd, &ready))
                continue;
            if (fd == listener) {
                int c = accept(listener, NULL, NULL);
                if (c >= 0 && c < FD_SETSIZE) {
                    FD_SET(c, &all);
                    if (c > fdmax)
                        fdmax = c;
                } else if (c >= 0) {
                    close(c);
                }
                continue;
            }
            modbus_set_socket(ctx, fd);
            int len = modbus_receive(ctx, query);
            if (len > 0 && serve(ctx, query, len) == 0)
                continue;
            if (len == 0)
                continue; /* a request libmodbus itself ignores */
            close(fd);
            FD_CLR(fd, &all);
        }
    }
}
