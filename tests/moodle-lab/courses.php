<?php
// Extra lab set-up for tests/moodle_real.rs (run by scripts/install-test-deps.sh through the lab's
// MOODLE_LAB_PHP_SCRIPTS): courses whose idnumbers are what the default role rule
// `ENTAuxEnsClasses|course|editingteacher|{school}${code}` gives for the sample school
// (SIREN 99900100000016) and for school 0 of the generated directory (SIREN 9990000100000).
// The other generated schools get no course on purpose (roles skipped: course missing).
// Idempotent: a course is looked up by idnumber first.

define('CLI_SCRIPT', true);
$opts = getopt('', ['root:']);
require($opts['root'] . '/config.php');
require_once($CFG->dirroot . '/course/lib.php');

\core\session\manager::set_user(get_admin());
$cat = $DB->get_field('course_categories', 'id', ['idnumber' => 'CAT-COLLEGE'], MUST_EXIST);
$want = [];
foreach (['6A', '6B', '5A'] as $class) {
    $want["99900100000016\$$class"] = "SAMPLE-$class";
}
foreach (['6A', '6B', '6C', '5A', '5B', '5C', '4A', '4B', '3A', '3B'] as $class) {
    $want["9990000100000\$$class"] = "GEN0-$class";
}
foreach ($want as $idnumber => $shortname) {
    if ($DB->record_exists('course', ['idnumber' => $idnumber])) {
        continue;
    }
    create_course((object)['category' => $cat, 'fullname' => "Classe $shortname", 'shortname' => $shortname,
        'idnumber' => $idnumber, 'summary' => 'Lab course for the sync tests', 'summaryformat' => FORMAT_HTML,
        'format' => 'topics', 'numsections' => 1]);
}
echo "[courses.php] " . count($want) . " sync test courses present\n";
