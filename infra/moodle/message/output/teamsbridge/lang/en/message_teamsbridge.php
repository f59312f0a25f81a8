<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.


/**
 * English strings.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$string['bridgedown'] = 'The Teams bridge did not take the notification: {$a}. It will be retried.';
$string['bridgeurl'] = 'Bridge webhook URL';
$string['bridgeurl_desc'] = 'The bridge\'s notification endpoint, e.g. https://bridge.example.org/api/webhook. HTTPS is required, except for a bridge on this server (http://127.0.0.1 or http://localhost).';
$string['defaulttitle'] = 'Moodle notification';
$string['pluginname'] = 'Microsoft Teams (bridge)';
$string['privacy:metadata:contexturl'] = 'The link to the page the notification is about.';
$string['privacy:metadata:fullmessage'] = 'The text of the notification.';
$string['privacy:metadata:subject'] = 'The subject of the notification.';
$string['privacy:metadata:teamsbridge'] = 'Notifications routed to Microsoft Teams are sent to the school\'s Teams bridge, which delivers them to the user in Teams.';
$string['privacy:metadata:userid'] = 'The Moodle id of the user the notification is for.';
$string['secret'] = 'Shared secret';
$string['secret_desc'] = 'The same value as WEBHOOK_SECRET in the bridge\'s settings (at least 16 characters). Each notification is signed with it (HMAC-SHA256); it is never sent.';
$string['tasksend'] = 'Send a notification to the Teams bridge';
$string['timeout'] = 'Timeout (seconds)';
$string['timeout_desc'] = 'How long a page waits for the bridge (1 to 30 seconds). A notification the bridge does not take in time is queued and retried by cron.';
