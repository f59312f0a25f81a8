<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.


namespace message_teamsbridge\privacy;

use core_privacy\local\metadata\collection;

defined('MOODLE_INTERNAL') || die();

/**
 * The output stores nothing of its own; it sends notifications to the Teams bridge.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class provider implements \core_privacy\local\metadata\provider {
    /**
     * What leaves Moodle, and where to.
     *
     * @param collection $collection
     * @return collection
     */
    public static function get_metadata(collection $collection): collection {
        $collection->add_external_location_link('teamsbridge', [
            'userid' => 'privacy:metadata:userid',
            'subject' => 'privacy:metadata:subject',
            'fullmessage' => 'privacy:metadata:fullmessage',
            'contexturl' => 'privacy:metadata:contexturl',
        ], 'privacy:metadata:teamsbridge');
        return $collection;
    }
}
