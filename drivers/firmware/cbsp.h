/* CBSP/1 beam-steering controller: portable core (C11, no dynamic memory, no libc beyond string.h).
 *
 * The protocol is specified in drivers/PROTOCOL.md. The core owns the frame receiver, the
 * spot tables (double-buffered, swapped at a dwell-cycle boundary), the dwell sequencer and
 * the heartbeat. A hardware layer (hal.h: host/ for the PC build, rp2040/ for the Pico) feeds
 * it received bytes, calls cbsp_tick_1ms() from a 1 kHz timer and cbsp_dwell_next() from the
 * dwell timer, and implements the hal_* functions the core calls.
 */
#ifndef CBSP_H
#define CBSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef CBSP_MAX_SPOTS
#define CBSP_MAX_SPOTS 4096u /* compile-time capacity; the runtime limit may be lower */
#endif

#define CBSP_VERSION 1u
#define CBSP_TABLE_HEAD 12u
#define CBSP_RX_CAPACITY (8u + CBSP_TABLE_HEAD + 6u * CBSP_MAX_SPOTS)

enum cbsp_type { CBSP_TABLE = 0x01, CBSP_BLANK = 0x02, CBSP_HEARTBEAT = 0x03, CBSP_INFO = 0x04,
                 CBSP_SET_TIMEOUT = 0x05, CBSP_REPLY = 0x80 };
enum cbsp_status { CBSP_OK = 0, CBSP_BAD_LENGTH = 1, CBSP_UNKNOWN_TYPE = 2, CBSP_TOO_MANY_SPOTS = 3,
                   CBSP_SHARE_SUM = 4, CBSP_BAD_VALUE = 5, CBSP_FAULT = 6 };
enum cbsp_flag { CBSP_F_BLANKED = 0x01, CBSP_F_HB_EXPIRED = 0x02, CBSP_F_FAULT = 0x04 };
enum cbsp_blank_reason { CBSP_BLANK_COMMAND = 0, CBSP_BLANK_EMPTY = 1, CBSP_BLANK_HEARTBEAT = 2,
                         CBSP_BLANK_FAULT = 3 };

typedef struct {
    uint16_t x, y;      /* steering units (DAC code / frequency word), 0..65535 */
    uint16_t share;     /* share of the cycle, 1/65535 */
    uint32_t cum;       /* shares of this and all earlier spots of the table */
} cbsp_spot;

typedef struct {
    uint16_t n;
    cbsp_spot spot[CBSP_MAX_SPOTS];
} cbsp_table;

typedef struct {
    uint16_t max_spots;            /* <= CBSP_MAX_SPOTS */
    uint16_t heartbeat_timeout_ms; /* 10..60000 */
    uint32_t cycle_us;             /* dwell cycle: the beam visits every spot once per cycle */
    char serial[16];               /* ASCII, NUL-padded */
} cbsp_config;

typedef struct {
    cbsp_config cfg;
    /* receiver */
    uint8_t rx[CBSP_RX_CAPACITY];
    size_t rx_len;
    uint32_t ms_since_byte;
    /* tables: the sequencer reads tables[active]; a new table goes into the other one */
    cbsp_table tables[2];
    volatile uint8_t active;
    volatile bool pending;       /* tables[!active] waits for the next cycle boundary */
    volatile bool blanked;
    volatile bool fault;
    bool hb_expired;             /* reported in the next reply, then cleared */
    volatile uint32_t ms_since_rx;
    /* sequencer */
    uint16_t index;              /* next spot of the cycle; == n: the blank rest of the cycle */
    uint64_t cycle_start_us;     /* start of the current cycle (device clock) */
    uint32_t dither;             /* this cycle's phase of the dwell rounding, 0..65534 */
    uint32_t bound_prev;         /* end of the previous spot's dwell, us into the cycle */
    bool in_cycle;
    /* beam as last set (for the host build's log) */
    uint16_t beam_x, beam_y;
    bool beam_on;
    /* counters */
    uint32_t frames, crc_errors, bad_frames, tables_applied;
} cbsp_device;

/* core API (called by the hardware layer) */
void cbsp_init(cbsp_device *d, const cbsp_config *cfg);
void cbsp_rx(cbsp_device *d, const uint8_t *data, size_t n);
void cbsp_tick_1ms(cbsp_device *d, uint64_t now_us);
uint32_t cbsp_dwell_next(cbsp_device *d, uint64_t now_us);
void cbsp_enter_fault(cbsp_device *d, uint64_t now_us);
uint64_t cbsp_next_boundary(const cbsp_device *d, uint64_t now_us);
uint16_t cbsp_crc16(const uint8_t *p, size_t n);

/* hardware layer (each board's hal implements these) */
uint64_t hal_now_us(void);                 /* device clock, us since power-up */
void hal_beam_goto(uint16_t x, uint16_t y); /* set both axes, beam on */
void hal_beam_off(void);                    /* blank the beam (RF off / shutter) within microseconds */
void hal_send(const uint8_t *p, size_t n);  /* bytes to the host link */
void hal_critical_enter(void);              /* exclude the dwell timer interrupt */
void hal_critical_exit(void);
/* diagnostics hooks (no-ops on a board; the host build logs them) */
void hal_event_table(uint8_t seq, uint64_t t_effect_us, uint64_t t_host_us, const cbsp_table *t,
                     uint32_t cycle_us);
void hal_event_blank(uint64_t t_us, int reason);
void hal_event_frame(uint64_t t_host_us);  /* a frame carrying the host's time arrived */

#endif
