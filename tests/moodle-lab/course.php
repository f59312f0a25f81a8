<?php
// Creates one course in the lab (tests/moodle_real.rs: a course that appears after a sync skipped
// a role for want of it). Moodle's web services cannot create courses with the bridge's token.
// Usage: php course.php --root=<lab>/www/moodle --idnumber=X --shortname=Y   (idempotent)

define('CLI_SCRIPT', true);
$opts = getopt('', ['root:', 'idnumber:', 'shortname:']);
require($opts['root'] . '/config.php');
require_once($CFG->dirroot . '/course/lib.php');

\core\session\manager::set_user(get_admin());
if (!$DB->record_exists('course', ['idnumber' => $opts['idnumber']])) {
    $cat = $DB->get_field('course_categories', 'id', ['idnumber' => 'CAT-COLLEGE'], MUST_EXIST);
    create_course((object)['category' => $cat, 'fullname' => 'Classe ' . $opts['shortname'],
        'shortname' => $opts['shortname'], 'idnumber' => $opts['idnumber'], 'format' => 'topics',
        'numsections' => 1]);
}
