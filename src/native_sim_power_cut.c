/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * native_sim only: power cuts during flash writes, for pytest/test_power_cut.py.
 *
 * Zephyr 4.3's flash simulator has no write callback, so the settings storage (NVS) is put
 * behind a flash device of ours that counts the bytes written through it and forwards every
 * call to the simulator. It goes in as NVS mounts (the linker wraps nvs_mount()), so that the
 * writes of the mount's own repairs (an interrupted garbage collection finished, a sector
 * erased again) are counted and can be cut too. Armed with a budget of N bytes, it lets
 * exactly N more bytes reach the flash and then kills the process with SIGKILL: no shutdown,
 * no flush, as when the supply drops. The flash file (`--flash=FILE`, mapped shared) keeps
 * what reached it.
 *
 *   zephyr.exe --flash=f.bin --power-cut-after=N   armed from boot, the mount included
 *   zephyr.exe ... --flash-seed=S                  the flash model's seed (default: 1)
 *   uart:~$ flashcut arm N [S [KIND]]               armed from now on (seed S), counting
 *                                                   from the next write of KIND, e.g. "erase",
 *                                                   or of a length, "len=138" or "len>=200"
 *   uart:~$ flashcut count                          bytes written through the hook so far
 *
 * The cut is NOR flash's, from a generator seeded with S (printed as the hook arms, so a
 * failure can be replayed): the write that crosses the budget keeps its first bytes, and the
 * next byte is left partly programmed (a random subset of the bits it was to clear, cleared:
 * programming only takes bits from 1 to 0); an erase that crosses it leaves every byte of
 * the sector indeterminate (random), as an erase stopped between its pre-program and erase
 * pulses does. An erase counts its bytes like a write.
 *
 * While armed, every write and erase is logged ("flashcut: write #k ...", "flashcut: erase #k
 * ...") with what it is to NVS, in brackets: [data], [entry] (an allocation table entry,
 * written after its data), [close] (the entry that closes a full sector), [gc-copy-data] and
 * [gc-copy-entry] (garbage collection moving a live record to the new sector), [gc-done] (the
 * marker that garbage collection finished), [erase]. NVS keeps data from a sector's start
 * upwards and entries from its end downwards, so a write at NVS's entry write address is an
 * entry, and one at its data write address is data. Nothing here runs unless armed. The
 * boot's erase of a sector an erase cut left torn (src/shim.rs) goes through the flash
 * map, not NVS: it is neither counted nor cut.
 */

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zephyr/device.h>
#include <zephyr/drivers/flash.h>
#include <zephyr/drivers/flash/flash_simulator.h>
#include <zephyr/fs/nvs.h>
#include <zephyr/init.h>
#include <zephyr/kernel.h>
#include <zephyr/shell/shell.h>
#include <zephyr/sys/printk.h>

#include "cmdline.h" /* native_sim command-line options */
#include "soc.h"

/* The hook goes in as NVS mounts: settings' storage is the only NVS file system. */
BUILD_ASSERT(IS_ENABLED(CONFIG_SETTINGS_NVS), "the power-cut hook sits under settings on NVS");

#define ATE_SIZE    8U      /* bytes of an NVS allocation table entry (write block 1) */
#define ATE_ID_META 0xffffU /* the id of NVS's close and gc-done entries */

static uint32_t cut_after_option = UINT32_MAX; /* the parser presets 'u' options so too */
static uint32_t seed_option = UINT32_MAX;

static struct nvs_fs *nvs;
static const struct device *real_flash;
static bool armed;
static uint32_t budget;  /* bytes that may still reach the flash */
static uint32_t written; /* bytes written through the hook since it was installed */
static uint32_t writes;  /* write calls through the hook since it was installed */
static bool in_gc;       /* between a sector's close entry and the gc done marker */
static char at_kind[16]; /* if set, the budget counts from the first write of this kind,
			  * or of this length ("len=138", "len>=200")
			  */
static uint64_t rng = 1;

static const struct flash_driver_api *real_api(void)
{
	return (const struct flash_driver_api *)real_flash->api;
}

/* splitmix64: reproducible from the seed alone. */
static uint8_t random_byte(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (uint8_t)((z ^ (z >> 31)) >> 56);
}

static uint8_t *mock_at(off_t offset, size_t len)
{
	size_t mock_size;
	uint8_t *mock = flash_simulator_get_memory(real_flash, &mock_size);

	if (mock == NULL || offset < 0 || (size_t)offset + len > mock_size) {
		return NULL;
	}
	return mock + offset;
}

/* Device offset of an NVS address (sector in the high half, offset in the low half). */
static off_t device_offset(uint32_t nvs_addr)
{
	return nvs->offset + (off_t)(nvs_addr >> 16) * nvs->sector_size + (nvs_addr & 0xffff);
}

/* What a write at `offset` is to NVS; `data` is the write's. Tracks garbage collection. */
static const char *classify_write(off_t offset, const uint8_t *data, size_t len)
{
	if (nvs == NULL) {
		return "unknown";
	}
	if (offset == device_offset(nvs->ate_wra) && len == ATE_SIZE) {
		uint16_t id = (uint16_t)(data[0] | data[1] << 8);
		uint16_t data_len = (uint16_t)(data[4] | data[5] << 8);
		bool last_slot = (offset - nvs->offset) % nvs->sector_size ==
				 nvs->sector_size - ATE_SIZE;

		if (id == ATE_ID_META && data_len == 0) {
			if (last_slot) {
				/* A full sector is closed; garbage collection of the next follows. */
				in_gc = true;
				return "close";
			}
			in_gc = false;
			return "gc-done";
		}
		/* While mounting, the only entries written are a restarted collection's copies. */
		return in_gc || !nvs->ready ? "gc-copy-entry" : "entry";
	}
	if (offset == device_offset(nvs->data_wra)) {
		if (!nvs->ready) {
			in_gc = true;
		}
		return in_gc ? "gc-copy-data" : "data";
	}
	return "unknown";
}

static void power_cut(uint32_t torn_len, size_t len, off_t offset)
{
	printk("flashcut: power cut in write or erase #%u, after %u of its %zu bytes at 0x%lx (%u "
	       "bytes written in all)\n",
	       writes, torn_len, len, (long)offset, written);
	/* Not nsi_exit(): that runs the simulator's exit hooks. SIGKILL stops the whole process
	 * now, whichever thread raises it.
	 */
	raise(SIGKILL);
	for (;;) {
	}
}

/* Whether a write of `kind` and `len` bytes is the one the cut is counted from: `aim` is a
 * kind, "len=N" (exactly N bytes) or "len>=N" (at least N).
 */
static bool aims_at(const char *aim, const char *kind, size_t len)
{
	if (strncmp(aim, "len>=", 5) == 0) {
		return len >= strtoul(aim + 5, NULL, 10);
	}
	if (strncmp(aim, "len=", 4) == 0) {
		return len == strtoul(aim + 4, NULL, 10);
	}
	return strcmp(kind, aim) == 0;
}

static int cut_write(const struct device *dev, off_t offset, const void *data, size_t len)
{
	ARG_UNUSED(dev);
	const uint8_t *bytes = data;
	const char *kind = classify_write(offset, bytes, len);
	int ret;

	writes++;
	if (!armed) {
		written += len;
		return real_api()->write(real_flash, offset, data, len);
	}
	if (at_kind[0] != '\0' && aims_at(at_kind, kind, len)) {
		at_kind[0] = '\0';
	}
	printk("flashcut: write #%u, %zu bytes at 0x%lx (%u written, %u before the cut)", writes,
	       len, (long)offset, written, at_kind[0] != '\0' ? UINT32_MAX : budget);
	if (len <= 32) {
		/* An NVS allocation table entry (8 bytes): the test reads ids and lengths from it;
		 * or a short record, such as the credential index (28), which it recognizes.
		 */
		printk(" data");
		for (size_t i = 0; i < len; i++) {
			printk(" %02x", bytes[i]);
		}
	}
	printk(" [%s]\n", kind);
	if (at_kind[0] != '\0') {
		/* Not yet at the write the cut aims at. */
		written += len;
		return real_api()->write(real_flash, offset, data, len);
	}
	if (len > budget) {
		/* The supply drops within this write: its first `budget` bytes reach the flash,
		 * and the next is caught half programmed.
		 */
		uint32_t torn = budget;
		uint8_t *next = mock_at(offset + torn, 1);

		if (torn > 0) {
			(void)real_api()->write(real_flash, offset, data, torn);
			written += torn;
		}
		if (next != NULL) {
			*next &= ~(*next & ~bytes[torn] & random_byte());
		}
		power_cut(torn, len, offset);
	}
	ret = real_api()->write(real_flash, offset, data, len);
	written += len;
	budget -= len;
	if (budget == 0) {
		/* Cut right after this write, before whatever the caller does next. */
		power_cut(len, len, offset);
	}
	return ret;
}

static int cut_read(const struct device *dev, off_t offset, void *data, size_t len)
{
	ARG_UNUSED(dev);
	return real_api()->read(real_flash, offset, data, len);
}

static int cut_erase(const struct device *dev, off_t offset, size_t size)
{
	ARG_UNUSED(dev);
	int ret;

	writes++;
	if (!armed) {
		written += size;
		return real_api()->erase(real_flash, offset, size);
	}
	if (strcmp(at_kind, "erase") == 0) {
		at_kind[0] = '\0';
	}
	printk("flashcut: erase #%u, %zu bytes at 0x%lx (%u written, %u before the cut) [erase]\n",
	       writes, size, (long)offset, written, at_kind[0] != '\0' ? UINT32_MAX : budget);
	if (at_kind[0] != '\0') {
		written += size;
		return real_api()->erase(real_flash, offset, size);
	}
	if (size > budget) {
		/* Stopped mid-erase, NOR cells read back as neither the old data nor erased. */
		uint8_t *sector = mock_at(offset, size);

		if (sector != NULL) {
			for (size_t i = 0; i < size; i++) {
				sector[i] = random_byte();
			}
			written += budget;
		}
		power_cut(budget, size, offset);
	}
	ret = real_api()->erase(real_flash, offset, size);
	written += size;
	budget -= size;
	if (budget == 0) {
		power_cut(size, size, offset);
	}
	return ret;
}

static const struct flash_parameters *cut_get_parameters(const struct device *dev)
{
	ARG_UNUSED(dev);
	return real_api()->get_parameters(real_flash);
}

static int cut_get_size(const struct device *dev, uint64_t *size)
{
	ARG_UNUSED(dev);
	return real_api()->get_size(real_flash, size);
}

#if defined(CONFIG_FLASH_PAGE_LAYOUT)
static void cut_page_layout(const struct device *dev, const struct flash_pages_layout **layout,
			    size_t *layout_size)
{
	ARG_UNUSED(dev);
	real_api()->page_layout(real_flash, layout, layout_size);
}
#endif

static DEVICE_API(flash, cut_api) = {
	.read = cut_read,
	.write = cut_write,
	.erase = cut_erase,
	.get_parameters = cut_get_parameters,
	.get_size = cut_get_size,
#if defined(CONFIG_FLASH_PAGE_LAYOUT)
	.page_layout = cut_page_layout,
#endif
};

DEVICE_DEFINE(flashcut, "flashcut", NULL, NULL, NULL, NULL, POST_KERNEL,
	      CONFIG_KERNEL_INIT_PRIORITY_DEVICE, &cut_api);

int __real_nvs_mount(struct nvs_fs *fs);

/* Linked in place of nvs_mount() (-Wl,--wrap=nvs_mount): the file system mounts, and is
 * used from then on, through the hook.
 */
int __wrap_nvs_mount(struct nvs_fs *fs)
{
	/* Settings sets the device again before it tries a failed mount again. */
	if (fs->flash_device != DEVICE_GET(flashcut)) {
		nvs = fs;
		real_flash = fs->flash_device;
		fs->flash_device = DEVICE_GET(flashcut);
	}
	return __real_nvs_mount(fs);
}

static void arm(uint32_t bytes, uint32_t seed, const char *kind)
{
	rng = seed;
	budget = bytes;
	strncpy(at_kind, kind, sizeof(at_kind) - 1);
	armed = true;
	printk("flashcut: armed, power cut after %u more bytes (flash seed %u)%s%s\n", bytes, seed,
	       kind[0] != '\0' ? ", counted from the next write of " : "", kind);
}

static int arm_from_option(void)
{
	if (cut_after_option != UINT32_MAX) {
		arm(cut_after_option, seed_option == UINT32_MAX ? 1 : seed_option, "");
	}
	return 0;
}

/* Before main(), where the application mounts the settings storage. */
SYS_INIT(arm_from_option, POST_KERNEL, 0);

static void add_power_cut_option(void)
{
	static struct args_struct_t options[] = {
		{
			.option = "power-cut-after",
			.name = "bytes",
			.type = 'u',
			.dest = (void *)&cut_after_option,
			.descript = "Kill the process (SIGKILL) once this many bytes have been "
				    "written to the settings flash, tearing the write that crosses "
				    "the count (power-cut tests)",
		},
		{
			.option = "flash-seed",
			.name = "seed",
			.type = 'u',
			.dest = (void *)&seed_option,
			.descript = "Seed of the torn write's or erase's random bits at a power "
				    "cut (default 1)",
		},
		ARG_TABLE_ENDMARKER,
	};

	native_add_command_line_opts(options);
}

NATIVE_TASK(add_power_cut_option, PRE_BOOT_1, 10);

static int cmd_arm(const struct shell *sh, size_t argc, char **argv)
{
	char *end;
	unsigned long bytes = strtoul(argv[1], &end, 0);
	unsigned long seed = 1;

	if (*end != '\0' || bytes >= UINT32_MAX) {
		shell_error(sh, "flashcut: not a byte count: %s", argv[1]);
		return -EINVAL;
	}
	if (argc > 2) {
		seed = strtoul(argv[2], &end, 0);
		if (*end != '\0' || seed >= UINT32_MAX) {
			shell_error(sh, "flashcut: not a seed: %s", argv[2]);
			return -EINVAL;
		}
	}
	arm((uint32_t)bytes, (uint32_t)seed, argc > 3 ? argv[3] : "");
	return 0;
}

static int cmd_count(const struct shell *sh, size_t argc, char **argv)
{
	ARG_UNUSED(argc);
	ARG_UNUSED(argv);
	shell_print(sh, "flashcut: %u bytes in %u writes%s", written, writes,
		    real_flash == NULL ? " (not installed)" : "");
	return 0;
}

SHELL_STATIC_SUBCMD_SET_CREATE(flashcut_commands,
			       SHELL_CMD_ARG(arm, NULL,
					     "arm <bytes> [seed [kind]]: cut after that many bytes",
					     cmd_arm, 2, 2),
			       SHELL_CMD(count, NULL, "bytes written through the hook", cmd_count),
			       SHELL_SUBCMD_SET_END);
SHELL_CMD_REGISTER(flashcut, &flashcut_commands, "Power cuts during flash writes (tests)", NULL);
