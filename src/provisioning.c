/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Run-time provisioning (src/runtime_credentials.rs) and the persistent outbox
 * (src/outbox_journal.rs): the `cred` shell commands, records in flash by key through
 * Zephyr's settings (NVS on the board's storage partition, the flash simulator on
 * native_sim), and the X.509/key checks with mbedTLS.
 *
 * The shell only parses words; every decision is the Rust side's, which answers with a
 * line of text and a status.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <zephyr/fs/nvs.h>
#include <zephyr/kernel.h>
#include <zephyr/random/random.h>
#include <zephyr/settings/settings.h>
#include <zephyr/shell/shell.h>
#include <zephyr/storage/flash_map.h>
#include <zephyr/sys/crc.h>
#include <zephyr/sys/printk.h>

#include "shim.h"

#include <mbedtls/platform.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

/* --- Records in flash ---------------------------------------------------------------------- */

struct load_target {
	uint8_t *buf;
	size_t cap;
	ssize_t len;
};

static int load_record(const char *key, size_t len, settings_read_cb read_cb, void *cb_arg,
		       void *param)
{
	struct load_target *target = param;

	/* settings_load_subtree_direct hands us the subtree root itself as key "" (NULL). */
	if (key != NULL && key[0] != '\0') {
		return 0;
	}
	if (len > target->cap) {
		target->len = -EFBIG;
		return 0;
	}
	target->len = read_cb(cb_arg, target->buf, len);
	return 0;
}

#if DT_HAS_CHOSEN(zephyr_settings_partition)
#define SETTINGS_PARTITION DT_FIXED_PARTITION_ID(DT_CHOSEN(zephyr_settings_partition))
#else
#define SETTINGS_PARTITION FIXED_PARTITION_ID(storage_partition)
#endif

/*
 * NVS's mount finishes an interrupted garbage collection by erasing the sector it was copying
 * into, then copying again. A power cut inside that erase can leave the sector's bytes
 * anything (NOR flash stopped mid-erase); then every sector's last entry reads as written, NVS
 * finds no open sector and refuses to mount (-EDEADLK). That sector holds nothing the sector
 * it copies from does not: erase it again when it is the only one whose closing entry fails
 * its CRC-8, as the mount would have. Returns 0 if a sector was erased.
 */
static int erase_torn_sector(void)
{
	const struct flash_area *fa;
	struct flash_sector first;
	uint32_t count = 1;
	uint8_t ate[8]; /* struct nvs_ate: id, offset, len, part, crc8 */
	off_t torn = -1;
	size_t sector;
	int ret = flash_area_open(SETTINGS_PARTITION, &fa);

	if (ret < 0) {
		return ret;
	}
	ret = flash_area_get_sectors(SETTINGS_PARTITION, &count, &first);
	if (ret < 0 && ret != -ENOMEM) {
		goto out;
	}
	sector = CONFIG_SETTINGS_NVS_SECTOR_SIZE_MULT * first.fs_size;
	for (off_t at = 0; at + sector <= fa->fa_size &&
			   at < (off_t)(sector * CONFIG_SETTINGS_NVS_SECTOR_COUNT);
	     at += sector) {
		ret = flash_area_read(fa, at + sector - sizeof(ate), ate, sizeof(ate));
		if (ret < 0) {
			goto out;
		}
		if (crc8_ccitt(0xff, ate, sizeof(ate) - 1) != ate[sizeof(ate) - 1]) {
			if (torn >= 0) {
				ret = -EDEADLK; /* not one torn erase: leave it as it is */
				goto out;
			}
			torn = at;
		}
	}
	if (torn < 0) {
		ret = -EDEADLK;
		goto out;
	}
	printk("settings: the flash's sector at 0x%lx reads neither erased nor written (an erase "
	       "cut short by a power cut): erased again\n",
	       (long)(fa->fa_off + torn));
	ret = flash_area_erase(fa, torn, sector);
out:
	flash_area_close(fa);
	return ret;
}

static int settings_ready(void)
{
	static bool initialized;
	int ret;

	if (initialized) {
		return 0;
	}
	ret = settings_subsys_init();
	if (ret == -EDEADLK && erase_torn_sector() == 0) {
		ret = settings_subsys_init();
	}
	if (ret == 0) {
		initialized = true;
	}
	return ret;
}

/* The record's length, 0 when there is none (no record is empty), or a negative errno. */
int app_record_load(const char *key, uint8_t *buf, size_t cap)
{
	struct load_target target = {.buf = buf, .cap = cap, .len = 0};
	int ret = settings_ready();

	if (ret < 0) {
		return ret;
	}
	ret = settings_load_subtree_direct(key, load_record, &target);
	return ret < 0 ? ret : (int)target.len;
}

/* One settings write: NVS writes the data, then the entry that makes it valid. */
int app_record_save(const char *key, const uint8_t *bytes, size_t len)
{
	int ret = settings_ready();

	return ret < 0 ? ret : settings_save_one(key, bytes, len);
}

int app_record_delete(const char *key)
{
	int ret = settings_ready();

	return ret < 0 ? ret : settings_delete(key);
}

/*
 * 1 if the storage holds records written without NVS's data CRC (by an image before it was
 * turned on), which this image cannot read: NVS takes their last 4 bytes for a CRC, and
 * reports settings' 2-byte name counter as absent though names are there. Else 0, or a
 * negative errno.
 */
int app_records_unreadable_format(void)
{
#if defined(CONFIG_NVS_DATA_CRC) && defined(CONFIG_SETTINGS_NVS)
	/* settings' NVS ids (subsys/settings/include/settings/settings_nvs.h) */
	const uint16_t name_counter_id = 0x8000;
	uint16_t count;
	void *storage;
	int ret = settings_ready();

	if (ret < 0) {
		return ret;
	}
	ret = settings_storage_get(&storage);
	if (ret < 0) {
		return ret;
	}
	if (nvs_read(storage, name_counter_id, &count, sizeof(count)) >= 0) {
		return 0;
	}
	/* A read of no bytes skips the data CRC: does any of the first names exist? */
	for (uint16_t id = name_counter_id + 1; id <= name_counter_id + 64; id++) {
		if (nvs_read(storage, id, &count, 0) >= 0) {
			return 1;
		}
	}
#endif
	return 0;
}

/*
 * Room in mbedTLS's heap for a moment when no TLS session holds it (at boot, before the
 * first connection): a record of the former credential format is read into it to be moved.
 */
void *app_scratch_alloc(size_t len)
{
	return mbedtls_calloc(1, len);
}

void app_scratch_free(void *buf)
{
	mbedtls_free(buf);
}

/* --- Checks with mbedTLS ------------------------------------------------------------------- */

static int random_bytes(void *ctx, unsigned char *buf, size_t len)
{
	ARG_UNUSED(ctx);
	return sys_csrand_get(buf, len) == 0 ? 0 : MBEDTLS_ERR_PK_BAD_INPUT_DATA;
}

/* 0, or mbedTLS's (negative) error code: the `cred` refusal names it. */
int app_parse_certificate(const uint8_t *der, size_t len)
{
	mbedtls_x509_crt crt;
	int ret;

	mbedtls_x509_crt_init(&crt);
	ret = mbedtls_x509_crt_parse_der(&crt, der, len);
	mbedtls_x509_crt_free(&crt);
	return ret;
}

static int parse_private_key(mbedtls_pk_context *pk, const uint8_t *der, size_t len)
{
	mbedtls_pk_init(pk);
	return mbedtls_pk_parse_key(pk, der, len, NULL, 0, random_bytes, NULL);
}

/* 0, or mbedTLS's (negative) error code. */
int app_parse_private_key(const uint8_t *der, size_t len)
{
	mbedtls_pk_context pk;
	int ret = parse_private_key(&pk, der, len);

	mbedtls_pk_free(&pk);
	return ret;
}

bool app_key_matches_certificate(const uint8_t *cert, size_t cert_len, const uint8_t *key,
				 size_t key_len)
{
	mbedtls_x509_crt crt;
	mbedtls_pk_context pk;
	bool matches = false;

	mbedtls_x509_crt_init(&crt);
	mbedtls_pk_init(&pk);
	if (mbedtls_x509_crt_parse_der(&crt, cert, cert_len) == 0 &&
	    parse_private_key(&pk, key, key_len) == 0) {
		matches = mbedtls_pk_check_pair(&crt.pk, &pk, random_bytes, NULL) == 0;
	}
	mbedtls_pk_free(&pk);
	mbedtls_x509_crt_free(&crt);
	return matches;
}

/* SHA-256 of a certificate's DER, or of the DER public key of a private key. */
int app_fingerprint(bool is_key, const uint8_t *der, size_t len, uint8_t digest[32])
{
	mbedtls_pk_context pk;
	/*
	 * An uncompressed P-256 SubjectPublicKeyInfo is 91 bytes, an RSA-2048 one 294 (the
	 * largest key `cred` takes, provisioning::MAX_KEY); RSA-4096 keys from the image, 550.
	 */
	uint8_t spki[600];
	int written;

	if (!is_key) {
		return mbedtls_sha256(der, len, digest, 0) == 0 ? 0 : -EINVAL;
	}
	if (parse_private_key(&pk, der, len) != 0) {
		mbedtls_pk_free(&pk);
		return -EINVAL;
	}
	/* mbedtls_pk_write_pubkey_der writes at the end of the buffer. */
	written = mbedtls_pk_write_pubkey_der(&pk, spki, sizeof(spki));
	mbedtls_pk_free(&pk);
	if (written <= 0) {
		return -EINVAL;
	}
	return mbedtls_sha256(spki + sizeof(spki) - written, written, digest, 0) == 0 ? 0 : -EINVAL;
}

/* --- The shell ------------------------------------------------------------------------------ */

#define ANSWER_MAX 768
/* One shell command at a time: the answer buffer is static to spare the shell's stack. */
static char answer[ANSWER_MAX];
static K_MUTEX_DEFINE(answer_lock);

static int run(const struct shell *sh, int op, const char *arg)
{
	int ret;

	k_mutex_lock(&answer_lock, K_FOREVER);
	ret = app_cred_command(op, arg, arg == NULL ? 0 : strlen(arg), answer, sizeof(answer));
	if (ret < 0) {
		shell_error(sh, "cred: %s", answer);
	} else {
		shell_print(sh, "%s", answer);
	}
	k_mutex_unlock(&answer_lock);
	return ret < 0 ? -EINVAL : 0;
}

static int cmd_begin(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, APP_CRED_BEGIN, argv[1]);
}

static int cmd_add(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, APP_CRED_ADD, argv[1]);
}

static int cmd_data(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, APP_CRED_DATA, argv[1]);
}

static int cmd_end(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, APP_CRED_END, NULL);
}

static int cmd_abort(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, APP_CRED_ABORT, NULL);
}

static int cmd_delete(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, APP_CRED_DELETE, argv[1]);
}

static int cmd_image(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, APP_CRED_IMAGE, argv[1]);
}

static int cmd_commit(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, APP_CRED_COMMIT, NULL);
}

static int cmd_list(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, APP_CRED_LIST, NULL);
}

SHELL_STATIC_SUBCMD_SET_CREATE(
	cred_commands,
	SHELL_CMD_ARG(begin, NULL, "Start an upload: begin ca|cert|key", cmd_begin, 2, 0),
	SHELL_CMD_ARG(add, NULL, "Start an upload of one more root for the CA bundle: add ca",
		      cmd_add, 2, 0),
	SHELL_CMD_ARG(data, NULL, "One line of the DER in base64", cmd_data, 2, 0),
	SHELL_CMD_ARG(end, NULL, "Finish the upload; check it and stage it", cmd_end, 1, 0),
	SHELL_CMD_ARG(abort, NULL, "Drop the upload and everything staged", cmd_abort, 1, 0),
	SHELL_CMD_ARG(delete, NULL, "Stage removal: delete ca|cert|key", cmd_delete, 2, 0),
	SHELL_CMD_ARG(image, NULL, "Stage the image's credential: image ca|cert|key", cmd_image,
		      2, 0),
	SHELL_CMD_ARG(commit, NULL, "Check the staged set and store it; used from the next "
		      "connection on", cmd_commit, 1, 0),
	SHELL_CMD_ARG(list, NULL, "Stored, staged and active credentials with SHA-256 "
		      "fingerprints", cmd_list, 1, 0),
	SHELL_SUBCMD_SET_END);

SHELL_CMD_REGISTER(cred, &cred_commands, "TLS credentials: provision without rebuilding", NULL);
