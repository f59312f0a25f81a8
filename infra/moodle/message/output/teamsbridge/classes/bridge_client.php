<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.


namespace message_teamsbridge;

defined('MOODLE_INTERNAL') || die();

global $CFG;
require_once($CFG->libdir . '/filelib.php');

/**
 * POSTs one notification to the bridge's /api/webhook, signed with the shared secret:
 * header X-Bridge-Timestamp = Unix time, X-Bridge-Signature = "sha256=" . hex HMAC-SHA256 of
 * "<timestamp>.<body>" (the bridge accepts each signature once, within its replay window, so
 * every attempt is signed afresh). Short timeouts, no redirects followed.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class bridge_client {
    /** The bridge queued it (202). */
    const SENT = 'sent';
    /** The bridge is down, slow or busy: try again later. */
    const RETRY = 'retry';
    /** The bridge refused this notification for good (400, 401, 413): retrying cannot help. */
    const REFUSED = 'refused';

    /** Connection attempts give up after this many seconds, whatever the total timeout. */
    const CONNECT_TIMEOUT = 2;

    /**
     * The site settings when the output is usable: the URL passes {@see self::url_allowed()}
     * and a secret of at least 16 characters is set (the bridge refuses shorter ones).
     *
     * @return \stdClass|null url, secret, timeout (seconds)
     */
    public static function config(): ?\stdClass {
        $cfg = get_config('message_teamsbridge');
        $url = trim((string) ($cfg->bridgeurl ?? ''));
        $secret = (string) ($cfg->secret ?? '');
        if ($url === '' || \core_text::strlen($secret) < 16 || !self::url_allowed($url)) {
            return null;
        }
        $timeout = (int) ($cfg->timeout ?? 3);
        return (object) [
            'url' => $url,
            'secret' => $secret,
            'timeout' => max(1, min(30, $timeout ?: 3)),
        ];
    }

    /**
     * Notifications carry personal data: https only, except to this machine (a bridge run next
     * to Moodle, or a test).
     *
     * @param string $url
     * @return bool
     */
    public static function url_allowed(string $url): bool {
        $parts = parse_url($url);
        if ($parts === false || empty($parts['scheme']) || empty($parts['host'])) {
            return false;
        }
        if (isset($parts['user']) || isset($parts['pass'])) {
            return false;
        }
        $scheme = strtolower($parts['scheme']);
        if ($scheme === 'https') {
            return true;
        }
        $host = strtolower(trim($parts['host'], '[]'));
        return $scheme === 'http' && ($host === 'localhost' || $host === '::1' || strpos($host, '127.') === 0);
    }

    /**
     * The signature header value the bridge checks (handler/notify/auth.rs).
     *
     * @param string $secret
     * @param int $timestamp Unix time, also sent in X-Bridge-Timestamp
     * @param string $body the exact bytes posted
     * @return string
     */
    public static function sign(string $secret, int $timestamp, string $body): string {
        return 'sha256=' . hash_hmac('sha256', $timestamp . '.' . $body, $secret);
    }

    /**
     * Send one JSON body.
     *
     * @param string $body JSON
     * @param \stdClass|null $config from {@see self::config()}; read when null
     * @return array [SENT|RETRY|REFUSED, detail for the logs (never the secret, never the body)]
     */
    public static function post(string $body, ?\stdClass $config = null): array {
        $config = $config ?? self::config();
        if ($config === null) {
            return [self::RETRY, 'the Teams bridge output is not configured (URL and secret)'];
        }
        $timestamp = time();
        // The URL is set by site administrators only (site config), and is often this machine
        // (the bridge next to Moodle), which Moodle's cURL blocklist refuses by default.
        $curl = new \curl(['ignoresecurity' => true]);
        $curl->setHeader([
            'Content-Type: application/json',
            'X-Bridge-Timestamp: ' . $timestamp,
            'X-Bridge-Signature: ' . self::sign($config->secret, $timestamp, $body),
        ]);
        $curl->post($config->url, $body, [
            'CURLOPT_TIMEOUT' => $config->timeout,
            'CURLOPT_CONNECTTIMEOUT' => min(self::CONNECT_TIMEOUT, $config->timeout),
            'CURLOPT_FOLLOWLOCATION' => 0,
            'CURLOPT_MAXREDIRS' => 0,
        ]);
        $errno = $curl->get_errno();
        if ($errno) {
            return [self::RETRY, 'cannot reach the bridge (cURL error ' . $errno . ')'];
        }
        $info = $curl->get_info();
        $status = (int) ($info['http_code'] ?? 0);
        return self::classify($status);
    }

    /**
     * What an HTTP status of /api/webhook means for this notification.
     *
     * @param int $status
     * @return array [SENT|RETRY|REFUSED, detail]
     */
    public static function classify(int $status): array {
        if ($status >= 200 && $status < 300) {
            return [self::SENT, 'HTTP ' . $status];
        }
        // 400: the body does not fit the schema (or the course is unknown); 401: wrong secret or
        // clock; 413: too large. None gets better by resending the same body.
        if (in_array($status, [400, 401, 403, 404, 413, 422], true)) {
            return [self::REFUSED, 'the bridge refused the notification (HTTP ' . $status . ')'];
        }
        return [self::RETRY, 'the bridge answered HTTP ' . $status];
    }
}
