<?php
// The Moodle side of tests/notify_sweep_real.rs (NotifySweep against the real Moodle).
//
// 1. What the sweep reads announcements with: the functions mod_forum_get_forums_by_courses and
//    mod_forum_get_forum_discussions in the bridge's external service, and mod/forum:viewdiscussion
//    for its role (the lab's configure_ws.php lists the sync and bot functions only; the README
//    names these for NotifySweep). Added when missing; idempotent.
// 2. A fresh course (--shortname) with an assignment due in --duehours hours, one due in 30 days,
//    and two news-forum announcements: one two hours old, one three days old.
//
//   php sweep.php --root=R --shortname=S --duehours=N
// Prints one JSON object: course id, the assignments' ids, cmids and due dates, the discussions.

define('CLI_SCRIPT', true);
$opts = getopt('', ['root:', 'shortname:', 'duehours:']);
require($opts['root'] . '/config.php');
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/webservice/lib.php');
require_once($CFG->dirroot . '/mod/forum/lib.php');
// Moodle's own data generator, as admin/tool/generator uses it outside PHPUnit.
require_once($CFG->dirroot . '/lib/phpunit/classes/util.php');

\core\session\manager::set_user(get_admin());

$service = $DB->get_record('external_services', ['shortname' => 'moodle_teams_bridge'], '*', MUST_EXIST);
$wsman = new webservice();
$added = [];
foreach (['mod_forum_get_forums_by_courses', 'mod_forum_get_forum_discussions'] as $fn) {
    if (!$DB->record_exists('external_services_functions', ['externalserviceid' => $service->id, 'functionname' => $fn])) {
        $wsman->add_external_function_to_service($fn, $service->id);
        $added[] = $fn;
    }
}
$role = $DB->get_record('role', ['shortname' => 'moodle_teams_bridge_ws'], '*', MUST_EXIST);
$syscontext = context_system::instance();
if (!$DB->record_exists('role_capabilities', ['roleid' => $role->id, 'contextid' => $syscontext->id,
        'capability' => 'mod/forum:viewdiscussion', 'permission' => CAP_ALLOW])) {
    assign_capability('mod/forum:viewdiscussion', CAP_ALLOW, $role->id, $syscontext->id, true);
    $added[] = 'mod/forum:viewdiscussion';
    // assign_capability() resets the role's cache (MUC included): the web server's workers reload it.
}

$gen = phpunit_util::get_data_generator();
$cat = $DB->get_field('course_categories', 'id', ['idnumber' => 'CAT-LYCEE'], MUST_EXIST);
$shortname = $opts['shortname'];
$course = $DB->get_record('course', ['shortname' => $shortname]);
if (!$course) {
    $course = create_course((object) ['category' => $cat, 'fullname' => 'Rappels ' . $shortname,
        'shortname' => $shortname, 'idnumber' => 'SWEEP-' . $shortname, 'format' => 'topics',
        'numsections' => 1]);
}
$now = time();
$due = $now + (int) $opts['duehours'] * 3600;
$soon = $gen->create_module('assign', ['course' => $course->id, 'name' => 'Exposé à rendre bientôt',
    'duedate' => $due, 'allowsubmissionsfromdate' => $now - 86400]);
$later = $gen->create_module('assign', ['course' => $course->id, 'name' => 'Dossier dans un mois',
    'duedate' => $now + 30 * 86400, 'allowsubmissionsfromdate' => $now - 86400]);

// The course's news forum ("Announcements"), made on first use as the course page does.
$news = forum_get_course_forum($course->id, 'news');
$forumgen = $gen->get_plugin_generator('mod_forum');
$older = $forumgen->create_discussion(['course' => $course->id, 'forum' => $news->id,
    'userid' => get_admin()->id, 'name' => 'Annonce d’il y a trois jours',
    'message' => '<p>Ancienne annonce</p>', 'timecreated' => $now - 3 * 86400]);
$newer = $forumgen->create_discussion(['course' => $course->id, 'forum' => $news->id,
    'userid' => get_admin()->id, 'name' => 'Sortie au musée jeudi',
    'message' => '<p>Rendez-vous à <b>9 h</b> devant le lycée&nbsp;!</p>', 'timecreated' => $now - 7200]);

echo json_encode([
    'added' => $added,
    'course' => (int) $course->id,
    'news_forum' => (int) $news->id,
    'soon' => ['id' => (int) $soon->id, 'cmid' => (int) $soon->cmid, 'duedate' => $due],
    'later' => ['id' => (int) $later->id, 'cmid' => (int) $later->cmid],
    'older' => ['id' => (int) $older->id, 'created' => $now - 3 * 86400],
    'newer' => ['id' => (int) $newer->id, 'created' => $now - 7200],
]), "\n";
