<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.

/**
 * Registers the processor, as every message output does.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

/**
 * Install the Teams bridge message processor.
 *
 * @return bool
 */
function xmldb_message_teamsbridge_install() {
    global $DB;
    if (!$DB->record_exists('message_processors', ['name' => 'teamsbridge'])) {
        $DB->insert_record('message_processors', (object) ['name' => 'teamsbridge']);
    }
    return true;
}
