/* CBSP/1 core: receiver state machine, request handling, double-buffered spot tables,
 * dwell sequencer and heartbeat (drivers/PROTOCOL.md). Portable C11, no dynamic memory. */
#include "cbsp.h"

#include <string.h>

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor */
static const uint16_t crc_table[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5, 0x60C6, 0x70E7,
    0x8108, 0x9129, 0xA14A, 0xB16B, 0xC18C, 0xD1AD, 0xE1CE, 0xF1EF,
    0x1231, 0x0210, 0x3273, 0x2252, 0x52B5, 0x4294, 0x72F7, 0x62D6,
    0x9339, 0x8318, 0xB37B, 0xA35A, 0xD3BD, 0xC39C, 0xF3FF, 0xE3DE,
    0x2462, 0x3443, 0x0420, 0x1401, 0x64E6, 0x74C7, 0x44A4, 0x5485,
    0xA56A, 0xB54B, 0x8528, 0x9509, 0xE5EE, 0xF5CF, 0xC5AC, 0xD58D,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76D7, 0x66F6, 0x5695, 0x46B4,
    0xB75B, 0xA77A, 0x9719, 0x8738, 0xF7DF, 0xE7FE, 0xD79D, 0xC7BC,
    0x48C4, 0x58E5, 0x6886, 0x78A7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xC9CC, 0xD9ED, 0xE98E, 0xF9AF, 0x8948, 0x9969, 0xA90A, 0xB92B,
    0x5AF5, 0x4AD4, 0x7AB7, 0x6A96, 0x1A71, 0x0A50, 0x3A33, 0x2A12,
    0xDBFD, 0xCBDC, 0xFBBF, 0xEB9E, 0x9B79, 0x8B58, 0xBB3B, 0xAB1A,
    0x6CA6, 0x7C87, 0x4CE4, 0x5CC5, 0x2C22, 0x3C03, 0x0C60, 0x1C41,
    0xEDAE, 0xFD8F, 0xCDEC, 0xDDCD, 0xAD2A, 0xBD0B, 0x8D68, 0x9D49,
    0x7E97, 0x6EB6, 0x5ED5, 0x4EF4, 0x3E13, 0x2E32, 0x1E51, 0x0E70,
    0xFF9F, 0xEFBE, 0xDFDD, 0xCFFC, 0xBF1B, 0xAF3A, 0x9F59, 0x8F78,
    0x9188, 0x81A9, 0xB1CA, 0xA1EB, 0xD10C, 0xC12D, 0xF14E, 0xE16F,
    0x1080, 0x00A1, 0x30C2, 0x20E3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83B9, 0x9398, 0xA3FB, 0xB3DA, 0xC33D, 0xD31C, 0xE37F, 0xF35E,
    0x02B1, 0x1290, 0x22F3, 0x32D2, 0x4235, 0x5214, 0x6277, 0x7256,
    0xB5EA, 0xA5CB, 0x95A8, 0x8589, 0xF56E, 0xE54F, 0xD52C, 0xC50D,
    0x34E2, 0x24C3, 0x14A0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
    0xA7DB, 0xB7FA, 0x8799, 0x97B8, 0xE75F, 0xF77E, 0xC71D, 0xD73C,
    0x26D3, 0x36F2, 0x0691, 0x16B0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xD94C, 0xC96D, 0xF90E, 0xE92F, 0x99C8, 0x89E9, 0xB98A, 0xA9AB,
    0x5844, 0x4865, 0x7806, 0x6827, 0x18C0, 0x08E1, 0x3882, 0x28A3,
    0xCB7D, 0xDB5C, 0xEB3F, 0xFB1E, 0x8BF9, 0x9BD8, 0xABBB, 0xBB9A,
    0x4A75, 0x5A54, 0x6A37, 0x7A16, 0x0AF1, 0x1AD0, 0x2AB3, 0x3A92,
    0xFD2E, 0xED0F, 0xDD6C, 0xCD4D, 0xBDAA, 0xAD8B, 0x9DE8, 0x8DC9,
    0x7C26, 0x6C07, 0x5C64, 0x4C45, 0x3CA2, 0x2C83, 0x1CE0, 0x0CC1,
    0xEF1F, 0xFF3E, 0xCF5D, 0xDF7C, 0xAF9B, 0xBFBA, 0x8FD9, 0x9FF8,
    0x6E17, 0x7E36, 0x4E55, 0x5E74, 0x2E93, 0x3EB2, 0x0ED1, 0x1EF0,};

uint16_t cbsp_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFFu;
    while (n--)
        crc = (uint16_t)((crc << 8) ^ crc_table[((crc >> 8) ^ *p++) & 0xFFu]);
    return crc;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

void cbsp_init(cbsp_device *d, const cbsp_config *cfg)
{
    memset(d, 0, sizeof *d);
    d->cfg = *cfg;
    if (d->cfg.max_spots == 0 || d->cfg.max_spots > CBSP_MAX_SPOTS)
        d->cfg.max_spots = CBSP_MAX_SPOTS;
    if (d->cfg.heartbeat_timeout_ms < 10)
        d->cfg.heartbeat_timeout_ms = 250;
    if (d->cfg.cycle_us == 0)
        d->cfg.cycle_us = 1000;
    d->blanked = true;
    hal_beam_off();
}

/* ------------------------------------------------------------------ beam */
static void blank(cbsp_device *d, int reason)
{
    hal_critical_enter();
    d->tables[d->active].n = 0; /* the sequencer shows the blank rest of the cycle from now on */
    d->pending = false;
    hal_beam_off();
    d->beam_on = false;
    hal_critical_exit();
    d->blanked = true;
    hal_event_blank(hal_now_us(), reason);
}

void cbsp_enter_fault(cbsp_device *d, uint64_t now_us)
{
    (void)now_us;
    d->fault = true;
    blank(d, CBSP_BLANK_FAULT);
}

uint64_t cbsp_next_boundary(const cbsp_device *d, uint64_t now_us)
{
    uint64_t end = d->cycle_start_us + d->cfg.cycle_us;
    while (end <= now_us) /* only if the dwell timer lags (it never does on a board) */
        end += d->cfg.cycle_us;
    return end;
}

uint32_t cbsp_dwell_next(cbsp_device *d, uint64_t now_us)
{
    for (;;) {
        const cbsp_table *t = &d->tables[d->active];
        if (d->index < t->n) {
            /* spot k ends at floor((cum_k * cycle + dither) / 65535) us into the cycle: the
             * dwells add up to at most the cycle, and as the dither phase walks through its
             * range from cycle to cycle, each spot's mean dwell is exactly share * cycle (a
             * 1 us timer alone would round small shares to nothing) */
            const cbsp_spot *s = &t->spot[d->index++];
            uint32_t bound = (uint32_t)(((uint64_t)s->cum * d->cfg.cycle_us + d->dither) / 65535u);
            uint32_t dwell = bound - d->bound_prev;
            d->bound_prev = bound;
            if (dwell == 0)
                continue;
            hal_beam_goto(s->x, s->y);
            d->beam_x = s->x;
            d->beam_y = s->y;
            d->beam_on = true;
            return dwell;
        }
        uint64_t end = d->cycle_start_us + d->cfg.cycle_us;
        if (now_us < end) { /* the blank rest of the cycle */
            hal_beam_off();
            d->beam_on = false;
            return (uint32_t)(end - now_us);
        }
        /* a new cycle starts on the grid; a waiting table takes over now */
        d->cycle_start_us = end + (now_us - end) / d->cfg.cycle_us * d->cfg.cycle_us;
        if (d->pending) {
            d->active ^= 1u;
            d->pending = false;
            d->tables_applied++;
        }
        d->index = 0;
        d->bound_prev = 0;
        d->dither = (d->dither + 40503u) % 65535u; /* golden-ratio step: evenly spread phases */
    }
}

void cbsp_tick_1ms(cbsp_device *d, uint64_t now_us)
{
    (void)now_us;
    if (d->ms_since_rx < UINT32_MAX)
        d->ms_since_rx++;
    if (d->ms_since_byte < UINT32_MAX)
        d->ms_since_byte++;
    if (!d->blanked && d->ms_since_rx > d->cfg.heartbeat_timeout_ms) {
        blank(d, CBSP_BLANK_HEARTBEAT);
        d->hb_expired = true;
    }
}

/* ------------------------------------------------------------------ replies */
static void reply(cbsp_device *d, uint8_t type, uint8_t seq, uint8_t status, uint16_t n, uint64_t t_us,
                  const uint8_t *extra, size_t n_extra)
{
    uint8_t f[6 + 12 + 21 + 2];
    size_t len = 12 + n_extra;
    uint8_t flags = (uint8_t)((d->blanked ? CBSP_F_BLANKED : 0) | (d->fault ? CBSP_F_FAULT : 0) |
                              (d->hb_expired ? CBSP_F_HB_EXPIRED : 0));
    d->hb_expired = false;
    f[0] = 0xA5;
    f[1] = 0x5A;
    wr16(f + 2, (uint16_t)len);
    f[4] = (uint8_t)(type | CBSP_REPLY);
    f[5] = seq;
    f[6] = status;
    f[7] = flags;
    wr16(f + 8, n);
    wr64(f + 10, t_us);
    if (n_extra)
        memcpy(f + 18, extra, n_extra);
    wr16(f + 6 + len, cbsp_crc16(f + 2, 4 + len));
    hal_send(f, 8 + len);
}

static void handle_table(cbsp_device *d, uint8_t seq, const uint8_t *p, size_t len)
{
    if (len < CBSP_TABLE_HEAD) {
        reply(d, CBSP_TABLE, seq, CBSP_BAD_LENGTH, 0, hal_now_us(), NULL, 0);
        return;
    }
    uint64_t t_host = rd64(p);
    uint16_t n = rd16(p + 10);
    if (len != CBSP_TABLE_HEAD + 6u * n) {
        reply(d, CBSP_TABLE, seq, CBSP_BAD_LENGTH, 0, hal_now_us(), NULL, 0);
        return;
    }
    hal_event_frame(t_host); /* the host build may follow the host's clock */
    if (n > d->cfg.max_spots) {
        reply(d, CBSP_TABLE, seq, CBSP_TOO_MANY_SPOTS, 0, hal_now_us(), NULL, 0);
        return;
    }
    uint32_t sum = 0;
    for (uint16_t i = 0; i < n; i++)
        sum += rd16(p + CBSP_TABLE_HEAD + 6u * i + 4);
    if (sum > 65535u) {
        reply(d, CBSP_TABLE, seq, CBSP_SHARE_SUM, 0, hal_now_us(), NULL, 0);
        return;
    }
    if (d->fault) {
        reply(d, CBSP_TABLE, seq, CBSP_FAULT, 0, hal_now_us(), NULL, 0);
        return;
    }
    if (n == 0) {
        blank(d, CBSP_BLANK_EMPTY);
        reply(d, CBSP_TABLE, seq, CBSP_OK, 0, hal_now_us(), NULL, 0);
        return;
    }
    /* fill the inactive buffer; the sequencer swaps it in at the next cycle boundary */
    hal_critical_enter();
    d->pending = false;
    hal_critical_exit();
    cbsp_table *t = &d->tables[d->active ^ 1u];
    uint32_t cum = 0;
    for (uint16_t i = 0; i < n; i++) {
        const uint8_t *s = p + CBSP_TABLE_HEAD + 6u * i;
        t->spot[i].x = rd16(s);
        t->spot[i].y = rd16(s + 2);
        t->spot[i].share = rd16(s + 4);
        cum += t->spot[i].share;
        t->spot[i].cum = cum;
    }
    t->n = n;
    uint64_t now = hal_now_us();
    hal_critical_enter();
    uint64_t t_effect = cbsp_next_boundary(d, now);
    d->pending = true;
    hal_critical_exit();
    d->blanked = false;
    hal_event_table(seq, t_effect, t_host, t, d->cfg.cycle_us);
    reply(d, CBSP_TABLE, seq, CBSP_OK, n, t_effect, NULL, 0);
}

static void handle(cbsp_device *d, uint8_t type, uint8_t seq, const uint8_t *p, size_t len)
{
    d->ms_since_rx = 0; /* every valid frame restarts the heartbeat timer */
    d->frames++;
    switch (type) {
    case CBSP_TABLE:
        handle_table(d, seq, p, len);
        return;
    case CBSP_BLANK:
        if (len) break;
        blank(d, CBSP_BLANK_COMMAND);
        reply(d, type, seq, CBSP_OK, 0, hal_now_us(), NULL, 0);
        return;
    case CBSP_HEARTBEAT:
        if (len != 8) break;
        hal_event_frame(rd64(p));
        reply(d, type, seq, CBSP_OK, 0, hal_now_us(), NULL, 0);
        return;
    case CBSP_INFO: {
        if (len) break;
        uint8_t info[21];
        info[0] = CBSP_VERSION;
        wr16(info + 1, d->cfg.max_spots);
        wr16(info + 3, d->cfg.heartbeat_timeout_ms);
        memcpy(info + 5, d->cfg.serial, 16);
        reply(d, type, seq, CBSP_OK, 0, hal_now_us(), info, sizeof info);
        return;
    }
    case CBSP_SET_TIMEOUT: {
        if (len != 2) break;
        uint16_t ms = rd16(p);
        if (ms < 10 || ms > 60000) {
            reply(d, type, seq, CBSP_BAD_VALUE, 0, hal_now_us(), NULL, 0);
            return;
        }
        d->cfg.heartbeat_timeout_ms = ms;
        reply(d, type, seq, CBSP_OK, 0, hal_now_us(), NULL, 0);
        return;
    }
    default:
        reply(d, type, seq, CBSP_UNKNOWN_TYPE, 0, hal_now_us(), NULL, 0);
        return;
    }
    reply(d, type, seq, CBSP_BAD_LENGTH, 0, hal_now_us(), NULL, 0);
}

/* ------------------------------------------------------------------ receiver (PROTOCOL.md 2) */
static void drop(cbsp_device *d, size_t k)
{
    memmove(d->rx, d->rx + k, d->rx_len - k);
    d->rx_len -= k;
}

static void parse(cbsp_device *d)
{
    for (;;) {
        size_t i = 0;
        while (i + 1 < d->rx_len && !(d->rx[i] == 0xA5 && d->rx[i + 1] == 0x5A))
            i++;
        if (i + 1 >= d->rx_len) { /* no SYNC: keep a trailing 0xA5 */
            size_t keep = (d->rx_len && d->rx[d->rx_len - 1] == 0xA5) ? 1 : 0;
            drop(d, d->rx_len - keep);
            return;
        }
        if (i)
            drop(d, i);
        if (d->rx_len < 6)
            return;
        size_t len = rd16(d->rx + 2);
        if (len > CBSP_RX_CAPACITY - 8) { /* larger than anything we accept: resynchronise */
            d->bad_frames++;
            drop(d, 1);
            continue;
        }
        if (d->rx_len < 8 + len)
            return;
        if (rd16(d->rx + 6 + len) != cbsp_crc16(d->rx + 2, 4 + len)) {
            d->crc_errors++; /* damaged: drop one byte, search again, never answer */
            drop(d, 1);
            continue;
        }
        handle(d, d->rx[4], d->rx[5], d->rx + 6, len);
        drop(d, 8 + len);
    }
}

void cbsp_rx(cbsp_device *d, const uint8_t *data, size_t n)
{
    if (d->ms_since_byte >= 50) /* a partial frame older than 50 ms is dropped */
        d->rx_len = 0;
    d->ms_since_byte = 0;
    while (n) {
        size_t room = sizeof d->rx - d->rx_len;
        size_t k = n < room ? n : room;
        memcpy(d->rx + d->rx_len, data, k);
        d->rx_len += k;
        data += k;
        n -= k;
        parse(d);
        if (k == 0) /* cannot happen: parse() always frees a full buffer */
            d->rx_len = 0;
    }
}
