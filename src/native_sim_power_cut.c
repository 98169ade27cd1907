/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * native_sim only: power cuts during flash writes, for pytest/test_power_cut.py.
 *
 * Zephyr 4.3's flash simulator has no write callback, so the settings storage (NVS) is put
 * behind a flash device of ours that counts the bytes written through it and forwards every
 * call to the simulator. Armed with a budget of N bytes, it lets exactly N more bytes reach
 * the flash (the write that crosses the budget is torn after its first bytes) and then kills
 * the process with SIGKILL: no shutdown, no flush, as when the supply drops. The flash file
 * (`--flash=FILE`, mapped shared) keeps what reached it.
 *
 *   zephyr.exe --flash=f.bin --power-cut-after=N   armed from boot (once settings are up)
 *   uart:~$ flashcut arm N                          armed from now on
 *   uart:~$ flashcut count                          bytes written through the hook so far
 *
 * An erase counts its bytes like a write, and a cut inside it leaves the sector part erased.
 * While armed, every write and erase is logged ("flashcut: write #k ...", "flashcut: erase #k
 * ...") so that a test can measure how many bytes one operation writes and where its cut
 * points fall. Nothing here runs unless one of the two arms it.
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
#include <zephyr/settings/settings.h>
#include <zephyr/shell/shell.h>
#include <zephyr/sys/printk.h>

#include "cmdline.h" /* native_sim command-line options */
#include "soc.h"

/* install() takes the settings storage for an NVS file system. */
BUILD_ASSERT(IS_ENABLED(CONFIG_SETTINGS_NVS), "the power-cut hook sits under settings on NVS");

static uint32_t cut_after_option = UINT32_MAX; /* the parser presets 'u' options so too */

static const struct device *real_flash;
static bool armed;
static uint32_t budget;  /* bytes that may still reach the flash */
static uint32_t written; /* bytes written through the hook since it was installed */
static uint32_t writes;  /* write calls through the hook since it was installed */

static const struct flash_driver_api *real_api(void)
{
	return (const struct flash_driver_api *)real_flash->api;
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

static int cut_write(const struct device *dev, off_t offset, const void *data, size_t len)
{
	ARG_UNUSED(dev);
	int ret;

	writes++;
	if (!armed) {
		written += len;
		return real_api()->write(real_flash, offset, data, len);
	}
	printk("flashcut: write #%u, %zu bytes at 0x%lx (%u written, %u before the cut)", writes,
	       len, (long)offset, written, budget);
	if (len <= 32) {
		/* An NVS allocation table entry (8 bytes): the test reads ids and lengths from it;
		 * or a short record, such as the credential index (28), which it recognizes.
		 */
		printk(" data");
		for (size_t i = 0; i < len; i++) {
			printk(" %02x", ((const uint8_t *)data)[i]);
		}
	}
	printk("\n");
	if (len > budget) {
		/* The supply drops within this write: its first `budget` bytes reach the flash. */
		uint32_t torn = budget;

		if (torn > 0) {
			(void)real_api()->write(real_flash, offset, data, torn);
			written += torn;
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

/*
 * An erase counts its bytes against the budget too: cut inside one, the sector is left part
 * erased (its first bytes 0xff, the rest as it was), as a NOR erase stopped early can be.
 */
static int cut_erase(const struct device *dev, off_t offset, size_t size)
{
	ARG_UNUSED(dev);
	int ret;

	writes++;
	if (!armed) {
		written += size;
		return real_api()->erase(real_flash, offset, size);
	}
	printk("flashcut: erase #%u, %zu bytes at 0x%lx (%u written, %u before the cut)\n", writes,
	       size, (long)offset, written, budget);
	if (size > budget) {
		size_t mock_size;
		uint8_t *mock = flash_simulator_get_memory(real_flash, &mock_size);

		if (mock != NULL && offset >= 0 && (size_t)offset + budget <= mock_size) {
			memset(mock + offset, 0xff, budget);
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

/* Puts the settings storage behind the hook (once); 0 or a negative errno. */
static int install(void)
{
	void *storage;
	struct nvs_fs *fs;
	int ret;

	if (real_flash != NULL) {
		return 0;
	}
	/* Mounts NVS if the application has not yet: its recovery writes are not counted. */
	ret = settings_subsys_init();
	if (ret < 0) {
		return ret;
	}
	ret = settings_storage_get(&storage);
	if (ret < 0) {
		return ret;
	}
	fs = storage;
	real_flash = fs->flash_device;
	fs->flash_device = DEVICE_GET(flashcut);
	return 0;
}

static int arm(uint32_t bytes)
{
	int ret = install();

	if (ret < 0) {
		printk("flashcut: not armed: settings storage unavailable (%d)\n", ret);
		return ret;
	}
	budget = bytes;
	armed = true;
	printk("flashcut: armed, power cut after %u more bytes\n", bytes);
	return 0;
}

static int arm_from_option(void)
{
	if (cut_after_option != UINT32_MAX) {
		(void)arm(cut_after_option);
	}
	return 0;
}

/* After the devices, before main(): the application's first settings write comes later. */
SYS_INIT(arm_from_option, APPLICATION, 99);

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
		ARG_TABLE_ENDMARKER,
	};

	native_add_command_line_opts(options);
}

NATIVE_TASK(add_power_cut_option, PRE_BOOT_1, 10);

static int cmd_arm(const struct shell *sh, size_t argc, char **argv)
{
	ARG_UNUSED(argc);
	char *end;
	unsigned long bytes = strtoul(argv[1], &end, 0);

	if (*end != '\0' || bytes >= UINT32_MAX) {
		shell_error(sh, "flashcut: not a byte count: %s", argv[1]);
		return -EINVAL;
	}
	return arm((uint32_t)bytes);
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
			       SHELL_CMD_ARG(arm, NULL, "arm <bytes>: cut after that many bytes",
					     cmd_arm, 2, 0),
			       SHELL_CMD(count, NULL, "bytes written through the hook", cmd_count),
			       SHELL_SUBCMD_SET_END);
SHELL_CMD_REGISTER(flashcut, &flashcut_commands, "Power cuts during flash writes (tests)", NULL);
