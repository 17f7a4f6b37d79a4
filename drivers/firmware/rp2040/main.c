/* RP2040 (Raspberry Pi Pico) hardware layer of the CBSP/1 reference firmware.
 *
 * Host link: USB CDC (TinyUSB through pico_stdio_usb's descriptors), binary-safe.
 * Steering:  MCP4922 two-channel 12-bit SPI DAC (channel A = x, channel B = y) on SPI0, both
 *            channels latched together with LDAC; its outputs drive galvo servo inputs or the
 *            tuning inputs of two VCOs feeding the AODs (through the usual op-amp gain/offset).
 * Blanking:  a GPIO that enables the beam (AOD RF switch / laser modulation input), low = off.
 * Timers:    hardware alarm 0 runs the dwell sequencer; a 1 kHz repeating timer the heartbeat.
 * Build:     see README.md (Pico SDK + CMake; not built in CI).
 */
#include <string.h>

#include "hardware/gpio.h"
#include "hardware/spi.h"
#include "hardware/sync.h"
#include "hardware/timer.h"
#include "pico/stdlib.h"
#include "pico/unique_id.h"
#include "tusb.h"

#include "../cbsp.h"

#define PIN_SPI_SCK 18
#define PIN_SPI_MOSI 19
#define PIN_DAC_CS 17
#define PIN_DAC_LDAC 20
#define PIN_BEAM_ENABLE 21 /* high: beam on (AOD RF switch enable / laser modulation) */
#define SPI_HZ 20000000u   /* MCP4922: up to 20 MHz */
#define DWELL_ALARM 0

static cbsp_device dev;
static uint64_t next_dwell_us;
static uint32_t irq_state;
static repeating_timer_t hb_timer;

uint64_t hal_now_us(void) { return time_us_64(); }
void hal_critical_enter(void) { irq_state = save_and_disable_interrupts(); }
void hal_critical_exit(void) { restore_interrupts(irq_state); }
void hal_event_table(uint8_t seq, uint64_t t_effect_us, uint64_t t_host_us, const cbsp_table *t, uint32_t cycle_us)
{
    (void)seq; (void)t_effect_us; (void)t_host_us; (void)t; (void)cycle_us;
}
void hal_event_blank(uint64_t t_us, int reason) { (void)t_us; (void)reason; }
void hal_event_frame(uint64_t t_host_us) { (void)t_host_us; }

static inline void dac_write(uint16_t word)
{
    uint8_t b[2] = {(uint8_t)(word >> 8), (uint8_t)word};
    gpio_put(PIN_DAC_CS, 0);
    spi_write_blocking(spi0, b, 2);
    gpio_put(PIN_DAC_CS, 1);
}

/* 16-bit steering units -> 12-bit DAC codes (the 4 low bits are dropped: 16 units per code) */
void hal_beam_goto(uint16_t x, uint16_t y)
{
    dac_write((uint16_t)(0x3000u | (x >> 4))); /* channel A, unbuffered, gain 1x, active */
    dac_write((uint16_t)(0xB000u | (y >> 4))); /* channel B */
    gpio_put(PIN_DAC_LDAC, 0);                  /* latch both outputs at once */
    gpio_put(PIN_DAC_LDAC, 1);
    gpio_put(PIN_BEAM_ENABLE, 1);
}

void hal_beam_off(void) { gpio_put(PIN_BEAM_ENABLE, 0); }

void hal_send(const uint8_t *p, size_t n)
{
    while (n) {
        if (!tud_cdc_connected()) return; /* host gone: the reply is lost, the heartbeat will blank */
        uint32_t k = tud_cdc_write(p, (uint32_t)n);
        p += k;
        n -= k;
        tud_cdc_write_flush();
        if (n) tud_task();
    }
}

static void dwell_alarm(uint alarm)
{
    (void)alarm;
    uint32_t dwell = cbsp_dwell_next(&dev, next_dwell_us);
    next_dwell_us += dwell;
    hardware_alarm_set_target(DWELL_ALARM, from_us_since_boot(next_dwell_us));
}

static bool heartbeat_tick(repeating_timer_t *t)
{
    (void)t;
    cbsp_tick_1ms(&dev, time_us_64());
    return true;
}

int main(void)
{
    stdio_usb_init(); /* USB descriptors and the background tud_task() */
    gpio_init(PIN_BEAM_ENABLE);
    gpio_set_dir(PIN_BEAM_ENABLE, GPIO_OUT);
    gpio_put(PIN_BEAM_ENABLE, 0); /* blanked from power-up */
    spi_init(spi0, SPI_HZ);
    gpio_set_function(PIN_SPI_SCK, GPIO_FUNC_SPI);
    gpio_set_function(PIN_SPI_MOSI, GPIO_FUNC_SPI);
    gpio_init(PIN_DAC_CS);
    gpio_set_dir(PIN_DAC_CS, GPIO_OUT);
    gpio_put(PIN_DAC_CS, 1);
    gpio_init(PIN_DAC_LDAC);
    gpio_set_dir(PIN_DAC_LDAC, GPIO_OUT);
    gpio_put(PIN_DAC_LDAC, 1);

    cbsp_config cfg = {.max_spots = CBSP_MAX_SPOTS, .heartbeat_timeout_ms = 250, .cycle_us = 1000};
    char id[2 * PICO_UNIQUE_BOARD_ID_SIZE_BYTES + 1];
    pico_get_unique_board_id_string(id, sizeof id);
    memcpy(cfg.serial, "CBSP-", 5);
    memcpy(cfg.serial + 5, id, 11); /* NUL-padded 16 bytes */
    cbsp_init(&dev, &cfg);

    hardware_alarm_claim(DWELL_ALARM);
    hardware_alarm_set_callback(DWELL_ALARM, dwell_alarm);
    next_dwell_us = time_us_64() + 1000u;
    dev.cycle_start_us = next_dwell_us - cfg.cycle_us;
    hardware_alarm_set_target(DWELL_ALARM, from_us_since_boot(next_dwell_us));
    add_repeating_timer_us(-1000, heartbeat_tick, NULL, &hb_timer);

    uint8_t buf[64];
    for (;;) {
        if (tud_cdc_available()) {
            uint32_t k = tud_cdc_read(buf, sizeof buf);
            if (k) cbsp_rx(&dev, buf, k);
        } else {
            tight_loop_contents();
        }
    }
}
